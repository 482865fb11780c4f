"""Export of edited splats: File > Export and bpy.ops.splatwork.export_splats in every format, with the
object transform baked in (view-dependent colour included) so the file renders like the scene."""
from __future__ import annotations

import bpy
import numpy as np
import pytest
from conftest import reference_render
from mathutils import Matrix

from bridge.formats import SplatSet, detect_format, read_splats
from bridge.formats.transform import bake_transform, quat_to_matrix

FILES = {"ply": "out.ply", "compressed_ply": "out.compressed.ply", "splat": "out.splat", "spz": "out.spz"}


def shiny_splats(n: int = 400, seed: int = 3) -> SplatSet:
    """A ball of splats whose colour depends strongly on the view direction (SH degree 3)."""
    rng = np.random.default_rng(seed)
    s = SplatSet.empty(n, 3)
    d = rng.normal(size=(n, 3))
    s.means[:] = 0.6 * d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0.5, 1.0, (n, 1))
    s.scales[:] = np.log(rng.uniform(0.04, 0.1, (n, 3)))
    s.quats[:] = rng.normal(size=(n, 4))
    s.opacities[:] = rng.uniform(1.0, 5.0, n)
    s.sh_dc[:] = rng.normal(scale=0.3, size=(n, 3))
    s.sh_rest[:] = rng.normal(scale=0.5, size=(n, 15, 3))
    return s


def placed_object(splatwork, splats: SplatSet, matrix: np.ndarray):
    obj = splatwork.addon.splats.splats_to_object(splats, "Shiny")
    obj.matrix_world = Matrix(matrix.tolist())
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    return obj


def object_matrix() -> np.ndarray:
    m = np.eye(4)
    turn = quat_to_matrix(np.array([[0.5, 0.6, -0.3, 0.55]]))[0]  # about 120 degrees about a tilted axis
    m[:3, :3], m[:3, 3] = 1.6 * turn, (0.4, -0.2, 0.3)
    return m


def camera() -> tuple[np.ndarray, np.ndarray]:
    K = np.array([[90.0, 0.0, 40.0], [0.0, 90.0, 32.0], [0.0, 0.0, 1.0]])
    w2c = np.eye(4)
    w2c[:3, 3] = (-0.4, 0.2, 4.0)  # looking down +z at the object's origin
    return K, w2c


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def test_exported_file_without_transform_renders_as_the_original_with_it(blender_with_splatwork, splatwork, tmp_path):
    splats, matrix = shiny_splats(), object_matrix()
    placed_object(splatwork, splats, matrix)
    path = tmp_path / "shiny.ply"
    assert bpy.ops.splatwork.export_splats(filepath=str(path)) == {"FINISHED"}
    exported = read_splats(path)

    K, w2c = camera()
    # The original seen through its transform without baking anything: with M = [s·R0 | T], a camera
    # [R | t] sees s·R0·x + T exactly as the rigid camera [R·R0 | (R·T + t) / s] sees x (the image is
    # the same, only depth scales), so positions, shapes and view directions come from the renderer.
    scale = float(np.cbrt(np.linalg.det(matrix[:3, :3])))
    in_object = np.eye(4)
    in_object[:3, :3] = w2c[:3, :3] @ matrix[:3, :3] / scale
    in_object[:3, 3] = (w2c[:3, :3] @ matrix[:3, 3] + w2c[:3, 3]) / scale
    original = reference_render(splats, K, in_object, 80, 64)["rgb"]
    assert (original.max(axis=-1) > 0.2).mean() > 0.3, "the object must fill the frame"
    assert psnr(reference_render(exported, K, w2c, 80, 64)["rgb"], original) > 40.0

    # The test can tell: baking positions and shapes but leaving the SH unrotated looks wrong.
    unrotated = bake_transform(splats.with_sh_degree(0), matrix)
    unrotated = SplatSet(unrotated.means, unrotated.scales, unrotated.quats, unrotated.opacities,
                         unrotated.sh_dc, splats.sh_rest.copy())
    assert psnr(reference_render(unrotated, K, w2c, 80, 64)["rgb"], original) < 30.0


@pytest.mark.parametrize("fmt", list(FILES))
def test_every_format_through_the_operator(blender_with_splatwork, splatwork, tmp_path, fmt):
    splats = shiny_splats(64)
    obj = placed_object(splatwork, splats, object_matrix())
    path = tmp_path / FILES[fmt]
    assert bpy.ops.splatwork.export_splats(filepath=str(path)) == {"FINISHED"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], "no temporary files left behind"
    back = read_splats(path)
    # What the object holds (Blender's splat attributes: normalised quaternions, sigmoid opacities).
    expected = bake_transform(splatwork.addon.splats.object_to_splats(obj), np.array(obj.matrix_world))
    assert len(back) == len(splats)
    # Lossy formats quantise positions and may reorder splats: each baked splat has its twin in the file.
    gaps = np.linalg.norm(expected.means[:, None] - back.means[None], axis=-1).min(axis=1)
    assert gaps.max() < 0.02
    if fmt == "ply":  # lossless: everything, SH included, is exactly what was baked
        for name in ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest"):
            np.testing.assert_array_equal(getattr(back, name), getattr(expected, name))


def test_format_choice_and_sh_degree_option(blender_with_splatwork, splatwork, tmp_path):
    placed_object(splatwork, shiny_splats(32), object_matrix())
    path = tmp_path / "chosen.bin"
    assert bpy.ops.splatwork.export_splats(filepath=str(path), file_format="SPZ") == {"FINISHED"}
    assert detect_format(path) == "spz"
    assert bpy.ops.splatwork.export_splats(filepath=str(tmp_path / "dc.ply"), sh_degree="0") == {"FINISHED"}
    assert read_splats(tmp_path / "dc.ply").sh_degree == 0


def test_non_uniform_scale_is_refused_with_view_dependent_colour_and_allowed_without(
        blender_with_splatwork, splatwork, tmp_path):
    obj = placed_object(splatwork, shiny_splats(32), np.eye(4))
    obj.scale = (1.0, 3.0, 1.0)
    path = tmp_path / "squashed.ply"
    with pytest.raises(RuntimeError, match=r"squashed\.ply.*Shiny.*non-uniform"):
        bpy.ops.splatwork.export_splats(filepath=str(path))
    assert not list(tmp_path.iterdir()), "a refused export writes nothing"
    assert bpy.ops.splatwork.export_splats(filepath=str(path), sh_degree="0") == {"FINISHED"}
    back = read_splats(path)
    assert np.ptp(back.means[:, 1]) > 2.5 * np.ptp(back.means[:, 0])


def test_nothing_to_export_and_unknown_extension_are_reported(blender_with_splatwork, splatwork, tmp_path):
    with pytest.raises(RuntimeError, match="No splat object to export selected"):
        bpy.ops.splatwork.export_splats(filepath=str(tmp_path / "x.ply"))
    placed_object(splatwork, shiny_splats(8), np.eye(4))
    with pytest.raises(RuntimeError, match=r"x\.obj.*\.spz"):
        bpy.ops.splatwork.export_splats(filepath=str(tmp_path / "x.obj"))
    assert not list(tmp_path.iterdir())


def test_file_export_menu_offers_the_operator(blender_with_splatwork, splatwork):
    module = splatwork.addon.output.export.__name__
    entries = [f for f in bpy.types.TOPBAR_MT_file_export._dyn_ui_initialize() if f.__module__ == module]
    assert len(entries) == 1
    assert bpy.ops.splatwork.export_splats.get_rna_type().name == "Export Gaussian Splats"


def test_selected_objects_merge_into_one_file_each_through_its_own_transform(
        blender_with_splatwork, splatwork, tmp_path):
    a = placed_object(splatwork, shiny_splats(20, seed=1), object_matrix())
    b_splats = shiny_splats(12, seed=2).with_sh_degree(1)
    b = placed_object(splatwork, b_splats, np.diag([2.0, 2.0, 2.0, 1.0]))
    a.select_set(True)
    path = tmp_path / "both.ply"
    assert bpy.ops.splatwork.export_splats(filepath=str(path)) == {"FINISHED"}
    back = read_splats(path)
    assert len(back) == 32 and back.sh_degree == 3
    both = np.concatenate([bake_transform(splatwork.addon.splats.object_to_splats(o), np.array(o.matrix_world)).means
                           for o in sorted((a, b), key=lambda o: o.name)])
    gaps = np.linalg.norm(both[:, None] - back.means[None], axis=-1).min(axis=1)
    assert gaps.max() < 1e-5


def test_export_writes_the_object_as_edited_now(blender_with_splatwork, splatwork, tmp_path):
    splats = shiny_splats(50)
    obj = placed_object(splatwork, splats, np.eye(4))
    # An edit as the artist's tools make it: half the points deleted, the opacity of the rest changed.
    kept = splats.subset(np.arange(50) % 2 == 0)
    kept.opacities[:] = -1.5
    splatwork.addon.splats.update_object_splats(obj, kept)
    path = tmp_path / "edited.ply"
    assert bpy.ops.splatwork.export_splats(filepath=str(path)) == {"FINISHED"}
    back = read_splats(path)
    np.testing.assert_array_equal(back.means, kept.means)
    np.testing.assert_array_equal(back.opacities, np.full(25, -1.5, np.float32))


def test_collection_exporter_writes_the_collections_splats(blender_with_splatwork, splatwork, tmp_path):
    splats = shiny_splats(16)
    obj = splatwork.addon.splats.splats_to_object(splats, "InCollection")
    shot = bpy.data.collections.new("Shot")
    bpy.context.scene.collection.children.link(shot)
    shot.objects.link(obj)
    bpy.context.scene.collection.objects.unlink(obj)
    obj.location = (1.0, 2.0, 3.0)
    exporter = shot.exporters.new("SPLATWORK_FH_export_splats")
    exporter.filepath = str(tmp_path / "shot.spz")
    with bpy.context.temp_override(collection=shot):
        assert bpy.ops.collection.exporter_export(index=0) == {"FINISHED"}
    back = read_splats(tmp_path / "shot.spz")
    assert len(back) == 16
    np.testing.assert_allclose(np.sort(back.means[:, 2]), np.sort(splats.means[:, 2] + 3.0), atol=0.02)
