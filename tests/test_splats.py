"""Splat objects in Blender: the point-cloud layout, the import entry points, bad files.

Undo itself cannot run here: ``bpy.ops.ed.undo`` needs a window, which headless bpy lacks; the
operator's UNDO flag is checked instead.
"""
from __future__ import annotations

from contextlib import nullcontext

import bpy
import numpy as np
import pytest
from conftest import assert_splats_close, compat, shared_data

NATIVE = compat.NATIVE_SPLATS


def _random_splats(formats, n: int, degree: int, extras: dict | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    f = np.float32
    rest = {0: 0, 1: 3, 2: 8, 3: 15}[degree]
    return formats.SplatSet(
        means=rng.normal(size=(n, 3)).astype(f),
        scales=rng.normal(-3, 1, size=(n, 3)).astype(f),
        quats=rng.normal(size=(n, 4)).astype(f),  # unnormalised, as trainers leave them
        opacities=rng.normal(size=n).astype(f),
        sh_dc=rng.normal(size=(n, 3)).astype(f),
        sh_rest=rng.normal(size=(n, rest, 3)).astype(f),
        extras=extras or {},
    )


def _assert_same(a, b):
    assert_splats_close(a, b)


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_object_round_trip_keeps_every_field_and_extra(blender_with_splatwork, splatwork, degree):
    api = splatwork.addon.splats
    formats = splatwork.bridge.formats
    n = 257
    rng = np.random.default_rng(degree)
    extras = {
        "nx": rng.normal(size=n).astype(np.float32),
        "opacity": np.arange(n, dtype=np.uint8),  # the name of a 3DGS property
        "sharp_face": np.arange(n, dtype=np.int32),  # names Blender reserves for its own attributes
        "material_index": rng.normal(size=n).astype(np.float32),
        "radius": rng.normal(size=n).astype(np.float32),
        "filter_3D": rng.normal(size=n),  # float64 survives through its raw bits
        "segment": rng.integers(-5, 5, n).astype(np.int16),
        "big": np.arange(n, dtype=np.uint32) * 16_000_000,
        "picked": rng.random(n) > 0.5,
    }
    splats = _random_splats(formats, n, degree, extras)
    obj = api.splats_to_object(splats, "splats")
    assert obj.type == "POINTCLOUD" and len(obj.data.points) == n
    assert obj.name in bpy.context.scene.collection.objects
    assert not [m for m in bpy.data.meshes], "the conversion helper mesh was left behind"
    assert getattr(obj.data, "type", "POINTS") == ("GAUSSIAN_SPLAT" if NATIVE else "POINTS")
    _assert_same(api.object_to_splats(obj), splats)
    # Blender's own splat attributes, with Blender's meanings; extras only under "extra:".
    names = set(obj.data.attributes.keys())
    assert {"position", "scale", "rotation", "radiance:base"} <= names
    assert {f"radiance:sh_{k}" for k in range({0: 0, 1: 3, 3: 15}[degree])} <= names
    assert {f"extra:{name}" for name in extras} <= names
    assert not {"opacity", "sh_dc", "sh_rest_1", "sharp_face", "material_index", "radius"} & names
    base = obj.data.attributes["radiance:base"]
    assert base.data_type == ("FLOAT4" if compat.FLOAT4 else "FLOAT_COLOR")
    scale = np.empty(n * 3, np.float32)
    obj.data.attributes["scale"].data.foreach_get("vector", scale)
    np.testing.assert_allclose(scale.reshape(n, 3), np.exp(splats.scales), rtol=1e-6)


@pytest.mark.parametrize("n", [0, 1, 4095, 4097, 9000])
def test_coefficient_planes_are_each_coefficient_across_blocks(blender_with_splatwork, splatwork, n):
    planes_of = splatwork.addon.splats.pointcloud._coefficient_planes
    rest = np.random.default_rng(n).normal(size=(n, 15, 3))  # float64 in, float32 planes out
    planes = list(planes_of(rest, group=4, block=1000))
    assert [k for k, _ in planes] == list(range(15))
    for k, plane in planes:
        assert plane.shape == (n, 3) and plane.dtype == np.float32 and plane.flags.c_contiguous
        np.testing.assert_array_equal(plane, rest[:, k].astype(np.float32))
    assert list(planes_of(np.zeros((n, 0, 3), np.float32))) == []


def test_update_in_place_and_with_a_new_count_keeps_object_modifier_and_material(blender_with_splatwork, splatwork):
    api = splatwork.addon.splats
    formats = splatwork.bridge.formats
    obj = api.splats_to_object(_random_splats(formats, 100, 3), "live")
    api.attach_preview(obj)
    obj.location = (1, 2, 3)
    same = _random_splats(formats, 100, 3, seed=1)
    api.update_object_splats(obj, same)
    _assert_same(api.object_to_splats(obj), same)
    grown = _random_splats(formats, 150, 1, seed=2)
    api.update_object_splats(obj, grown)
    _assert_same(api.object_to_splats(obj), grown)
    assert tuple(obj.location) == (1, 2, 3) and api.splat_modifier(obj) is not None
    if not NATIVE:  # the quad preview's material; native splats need none
        assert obj.data.materials[0].name == "Splatwork Splat"
    assert len(bpy.data.pointclouds) == 1, "the replaced data-block was left behind"
    assert getattr(obj.data, "type", "POINTS") == ("GAUSSIAN_SPLAT" if NATIVE else "POINTS")


def test_apply_transform_bakes_the_world_matrix(blender_with_splatwork, splatwork):
    api = splatwork.addon.splats
    formats = splatwork.bridge.formats
    splats = _random_splats(formats, 50, 2)
    obj = api.splats_to_object(splats, "moved")
    obj.location = (0.5, -1, 2)
    obj.rotation_euler = (0.3, -0.2, 1.1)
    obj.scale = (2, 2, 2)
    bpy.context.view_layer.update()
    baked = api.object_to_splats(obj, apply_transform=True)
    want = splatwork.bridge.formats.transform.bake_transform(api.object_to_splats(obj), np.array(obj.matrix_world))
    _assert_same(baked, want)
    _assert_same(api.object_to_splats(obj), splats)


def test_not_a_splat_object_is_a_clear_error(blender_with_splatwork, splatwork):
    bpy.ops.mesh.primitive_cube_add()
    with pytest.raises(ValueError, match="'Cube' is not a splat object: Splatwork looks for"):
        splatwork.addon.splats.object_to_splats(bpy.context.object)


def test_import_operator_builds_a_ready_object(blender_with_splatwork, splatwork):
    compat = splatwork.addon.common.compat
    path = shared_data("splats", "plush_dog.ply")
    assert bpy.ops.splatwork.import_splats(filepath=str(path), sh_degree=2) == {"FINISHED"}
    obj = bpy.context.active_object
    assert obj.name == "plush_dog" and obj.type == "POINTCLOUD" and obj.select_get()
    mod = splatwork.addon.splats.splat_modifier(obj)
    assert compat.get_modifier_input(mod, "SH Degree") == 2
    assert bpy.context.scene.cycles.transparent_max_bounces >= 1024
    splats = splatwork.addon.splats.object_to_splats(obj)
    _assert_same(splats, splatwork.bridge.formats.read_splats(path))
    bpy.context.scene.camera = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    bpy.context.scene.collection.objects.link(bpy.context.scene.camera)
    bpy.context.scene.camera.location = (0, -1.0, 0.0)
    bpy.context.scene.camera.rotation_euler = (1.5707963, 0, 0)
    geometry = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).evaluated_geometry()
    if NATIVE:
        # Native splats with the controls: still a Gaussian splat, bands above the degree dropped.
        assert obj.data.type == "GAUSSIAN_SPLAT" and mod.name == "Splat Controls" and not obj.data.materials
        evaluated = geometry.pointcloud
        assert evaluated.type == "GAUSSIAN_SPLAT" and len(evaluated.points) == len(splats)
        names = set(evaluated.attributes.keys())
        assert {f"radiance:sh_{k}" for k in range(8)} <= names and "radiance:sh_8" not in names
    else:
        assert mod.name == "Splat Preview"
        width_path = compat.modifier_input_path(mod, "Render Width")
        assert obj.animation_data.drivers[0].data_path == width_path
        # The preview really builds one quad per visible splat (four corners each).
        mesh = geometry.mesh
        assert 0 < len(mesh.vertices) <= 4 * len(splats) and len(mesh.vertices) % 4 == 0
        assert {"splat_uv", "splat_color", "splat_falloff"} <= set(mesh.attributes.keys())
        assert not {"radiance:sh_0", "scale", "rotation", "splat_transform"} & set(mesh.attributes.keys())
    # A second import shares the node groups (and the material).
    bpy.ops.splatwork.import_splats(filepath=str(path))
    assert len({m.node_group for o in bpy.data.objects if (m := splatwork.addon.splats.splat_modifier(o))}) == 1
    assert len([g for g in bpy.data.node_groups if g.name.startswith(mod.node_group.name)]) == 1
    assert len([m for m in bpy.data.materials if m.name.startswith("Splatwork Splat")]) <= 1


@pytest.mark.parametrize("content, problem", [
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\nend_header\n\x00\x00",
     "Cannot import splats: .*bad.ply"),
    (b"not a splat file at all", "Cannot import splats: .*bad.ply"),
])
def test_bad_file_reports_the_problem_and_builds_nothing(blender_with_splatwork, tmp_path, content, problem):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(content)
    before = (len(bpy.data.objects), len(bpy.data.pointclouds), len(bpy.data.meshes), len(bpy.data.node_groups))
    with pytest.raises(RuntimeError, match=problem):  # bpy raises an operator's ERROR report
        bpy.ops.splatwork.import_splats(filepath=str(bad))
    after = (len(bpy.data.objects), len(bpy.data.pointclouds), len(bpy.data.meshes), len(bpy.data.node_groups))
    assert after == before


def test_tolerated_oddities_are_reported_as_warnings(blender_with_splatwork, capsys):
    path = shared_data("splats", "three_points_trailing_byte.ply")
    assert bpy.ops.splatwork.import_splats(filepath=str(path)) == {"FINISHED"}
    assert len(bpy.context.active_object.data.points) == 3
    assert "Warning:" in capsys.readouterr().out  # headless Blender prints operator reports


def test_missing_file_is_reported(blender_with_splatwork, tmp_path):
    with pytest.raises(RuntimeError, match="nowhere.spz: no such file"):
        bpy.ops.splatwork.import_splats(filepath=str(tmp_path / "nowhere.spz"))


def test_entry_points_are_registered(blender_with_splatwork, splatwork):
    operators = splatwork.addon.splats.operators
    handler = bpy.types.FileHandler.bl_rna_get_subclass_py("SPLATWORK_FH_splats")
    assert handler is not None and set(handler.bl_file_extensions.split(";")) == {".ply", ".spz", ".splat", ".glb",
                                                                                  ".gltf"}
    assert handler.bl_file_extensions == ";".join(splatwork.bridge.formats.FILE_EXTENSIONS), "from the one table"
    assert bpy.types.Operator.bl_rna_get_subclass_py("SPLATWORK_OT_convert_splats") is not None
    assert handler.bl_import_operator == "splatwork.import_splats"
    assert operators.menu_import in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()
    panel = bpy.types.Panel.bl_rna_get_subclass_py("SPLATWORK_PT_splats")
    assert panel is not None and panel.bl_category == "Splatwork"
    assert "UNDO" in operators.SPLATWORK_OT_import_splats.bl_options



def test_a_failure_after_reading_reports_and_leaves_no_data_block(blender_with_splatwork, splatwork, tmp_path):
    """A readable file whose extra cannot become a Blender attribute (a 60-byte name: with the
    ``extra:`` prefix past Blender's 63 bytes) fails while building the object: a report, nothing left."""
    formats = splatwork.bridge.formats
    splats = _random_splats(formats, 10, 0, {"p" * 60: np.arange(10, dtype=np.float32)})
    path = tmp_path / "long_name.ply"
    formats.write_splats(path, splats)
    before = (len(bpy.data.objects), len(bpy.data.pointclouds), len(bpy.data.meshes))
    with pytest.raises(RuntimeError, match="Cannot import splats: .*long_name.ply.*longer than"):
        bpy.ops.splatwork.import_splats(filepath=str(path))
    assert (len(bpy.data.objects), len(bpy.data.pointclouds), len(bpy.data.meshes)) == before


SHARED_SPLATS = ["plush_dog.ply", "plush_dog.compressed.ply", "biker.compressed.ply", "biker.spz",
                 "tiny_64.compressed.ply", "three_points_trailing_byte.ply"]


@pytest.mark.parametrize("name", SHARED_SPLATS)
def test_every_real_splat_file_imports_through_the_operator(blender_with_splatwork, splatwork, name):
    """Files made by other tools (3DGS, SuperSplat, Niantic SPZ v4): each imports, natively on 5.3+,
    holding what the reader read (Blender's attributes, float32 rounding)."""
    path = shared_data("splats", name)
    assert bpy.ops.splatwork.import_splats(filepath=str(path)) == {"FINISHED"}
    obj = bpy.context.active_object
    assert getattr(obj.data, "type", "POINTS") == ("GAUSSIAN_SPLAT" if NATIVE else "POINTS")
    assert splatwork.addon.splats.splat_modifier(obj) is not None
    formats = splatwork.bridge.formats
    # The operator reports the tolerated trailing byte as a warning; the reader says it too.
    with pytest.warns(formats.FormatWarning, match="unexpected byte") if "trailing" in name else nullcontext():
        reference = formats.read_splats(path)
    assert_splats_close(splatwork.addon.splats.object_to_splats(obj), reference)
