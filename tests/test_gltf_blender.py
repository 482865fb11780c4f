"""Splats through Blender's own glTF 2.0 exporter and importer (io_scene_gltf2 with Splatwork's user
extensions), on every supported Blender: PLY -> Blender -> .glb -> Blender -> PLY equal within float32
rounding, the scene around the splats intact, bad splat primitives refused by name with the rest of
the scene imported, and nothing broken without the glTF add-on."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import bpy
import numpy as np
import pytest
from conftest import EXTENSION_MODULE

from bridge.formats import SplatSet, gltf, read_splats, write_splats
from bridge.formats.splatset import SH_REST_COUNT


def random_splats(n: int = 300, degree: int = 3, seed: int = 0) -> SplatSet:
    rng = np.random.default_rng(seed)
    f = np.float32
    return SplatSet(
        means=rng.uniform(-2, 2, (n, 3)).astype(f),
        scales=rng.uniform(-5, -1, (n, 3)).astype(f),
        quats=rng.normal(size=(n, 4)).astype(f),
        opacities=rng.uniform(-4, 6, n).astype(f),
        sh_dc=rng.uniform(-1.5, 1.5, (n, 3)).astype(f),
        sh_rest=rng.uniform(-0.5, 0.5, (n, SH_REST_COUNT[degree], 3)).astype(f),
    )


def glb_json(path: Path) -> dict:
    data = path.read_bytes()
    (length,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[20:20 + length])


def splat_objects(splatwork) -> list:
    return [o for o in bpy.context.scene.objects if splatwork.addon.splats.is_splat_object(o)]


def assert_close_splats(got: SplatSet, want: SplatSet) -> None:
    """Equal within the float32 rounding of glTF's linear scales, alphas, unit quaternions and the
    exact quarter turn between Blender's Z-up and glTF's Y-up (SH bands 2 and 3 mix under it)."""
    np.testing.assert_allclose(got.means, want.means, rtol=0, atol=2e-6)
    np.testing.assert_allclose(got.scales, want.scales, rtol=0, atol=2e-6)
    unit = want.quats / np.linalg.norm(want.quats, axis=1, keepdims=True)
    same_sign = np.where(np.sum(got.quats * unit, axis=1, keepdims=True) < 0, -1.0, 1.0)
    np.testing.assert_allclose(got.quats * same_sign, unit, rtol=0, atol=2e-6)
    alpha = 1.0 / (1.0 + np.exp(-want.opacities.astype(np.float64)))
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-got.opacities.astype(np.float64))), alpha, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.sh_dc, want.sh_dc)
    assert got.sh_degree == want.sh_degree
    np.testing.assert_allclose(got.sh_rest, want.sh_rest, rtol=0, atol=2e-6)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_ply_to_blender_to_glb_to_blender_to_ply(blender_with_splatwork, splatwork, tmp_path, degree):
    original = random_splats(degree=degree, seed=degree)
    write_splats(tmp_path / "in.ply", original)
    obj = splatwork.addon.splats.import_splats(str(tmp_path / "in.ply"))
    obj.location, obj.scale = (0.5, -1.0, 2.0), (1.5, 1.5, 1.5)
    obj.rotation_euler = (-1.2, 0.3, 0.7)
    bpy.context.view_layer.update()
    matrix = np.array(obj.matrix_world)
    assert bpy.ops.splatwork.export_splats(filepath=str(tmp_path / "before.ply"), use_selection=False) == {"FINISHED"}

    glb = tmp_path / "scene.glb"
    assert bpy.ops.export_scene.gltf(filepath=str(glb), export_format="GLB") == {"FINISHED"}
    doc = glb_json(glb)
    (primitive,) = doc["meshes"][0]["primitives"]
    assert primitive["mode"] == 0 and primitive["extensions"][gltf.EXTENSION]["kernel"] == "ellipse"
    assert doc["nodes"][0]["name"] == "in" and "rotation" in doc["nodes"][0], "the object's transform is the node's"
    assert len([k for k in primitive["attributes"] if k.startswith(gltf.PREFIX + "SH_DEGREE_")]) == (degree + 1) ** 2
    # What the file shows in glTF's world is what the scene shows, turned Y-up; the bridge reads it
    # in 3DGS's y-down axes, which Splatwork's PLY import turns Z-up: (x, y, z) -> (x, -z, y).
    world = read_splats(glb)
    before = read_splats(tmp_path / "before.ply")
    np.testing.assert_allclose(world.means, before.means[:, [0, 2, 1]] * (1, -1, 1), rtol=0, atol=1e-5)

    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    assert bpy.ops.import_scene.gltf(filepath=str(glb)) == {"FINISHED"}
    (back,) = splat_objects(splatwork)
    assert back.name == "in" and back.type == "POINTCLOUD"
    if splatwork.addon.common.compat.NATIVE_SPLATS:
        assert back.data.type == "GAUSSIAN_SPLAT"
    assert back.modifiers, "the splat controls (5.3) or preview modifier are attached"
    np.testing.assert_allclose(np.array(back.matrix_world), matrix, rtol=0, atol=1e-6)
    assert_close_splats(splatwork.addon.splats.object_to_splats(back), original)

    assert bpy.ops.splatwork.export_splats(filepath=str(tmp_path / "after.ply"), use_selection=False) == {"FINISHED"}
    after = read_splats(tmp_path / "after.ply")
    np.testing.assert_allclose(after.means, before.means, rtol=0, atol=1e-5)
    np.testing.assert_allclose(after.scales, before.scales, rtol=0, atol=1e-5)
    np.testing.assert_allclose(after.sh_rest, before.sh_rest, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(after.sh_dc, before.sh_dc)


def test_splats_keep_their_place_in_a_scene_of_meshes_cameras_and_children(blender_with_splatwork, splatwork,
                                                                           tmp_path):
    write_splats(tmp_path / "a.ply", random_splats(50, 1))
    splat = splatwork.addon.splats.import_splats(str(tmp_path / "a.ply"), name="Dog")
    bpy.ops.mesh.primitive_cube_add(location=(3, 0, 0))
    cube = bpy.context.active_object
    cube.parent = splat  # a mesh riding on the splats
    holder = bpy.data.objects.new("Holder", None)
    bpy.context.scene.collection.objects.link(holder)
    holder.location = (0, 5, 0)
    splat.parent = holder
    camera = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    bpy.context.scene.collection.objects.link(camera)
    bpy.context.view_layer.update()
    want = {o.name: np.array(o.matrix_world) for o in (splat, cube, holder, camera)}

    glb = tmp_path / "scene.glb"
    assert bpy.ops.export_scene.gltf(filepath=str(glb), export_format="GLB", export_cameras=True) == {"FINISHED"}
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    assert bpy.ops.import_scene.gltf(filepath=str(glb)) == {"FINISHED"}
    objects = bpy.context.scene.objects
    (dog,) = splat_objects(splatwork)
    assert dog.name == "Dog" and dog.parent == objects["Holder"]
    assert objects["Cube"].parent == dog and objects["Cube"].type == "MESH"
    for name in ("Dog", "Cube", "Holder"):
        np.testing.assert_allclose(np.array(objects[name].matrix_world), want[name], rtol=0, atol=1e-5)
    assert any(o.type == "CAMERA" for o in objects)
    assert len(bpy.data.pointclouds) == 1, "no second, native point cloud next to ours"


def test_linked_duplicates_share_one_glb_mesh(blender_with_splatwork, splatwork, tmp_path):
    obj = splatwork.addon.splats.splats_to_object(random_splats(20, 0), "A")
    twin = bpy.data.objects.new("B", obj.data)
    bpy.context.scene.collection.objects.link(twin)
    twin.location = (2, 0, 0)
    glb = tmp_path / "twins.glb"
    assert bpy.ops.export_scene.gltf(filepath=str(glb), export_format="GLB") == {"FINISHED"}
    doc = glb_json(glb)
    assert len(doc["meshes"]) == 1 and [n.get("mesh") for n in doc["nodes"]] == [0, 0]
    assert len(read_splats(glb)) == 40
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    assert bpy.ops.import_scene.gltf(filepath=str(glb)) == {"FINISHED"}
    assert sorted(o.name for o in splat_objects(splatwork)) == ["A", "B"]


def test_export_splats_operator_writes_glb(blender_with_splatwork, splatwork, tmp_path):
    splats = random_splats(40, 2)
    obj = splatwork.addon.splats.splats_to_object(splats, "S")
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    path = tmp_path / "out.glb"
    assert bpy.ops.splatwork.export_splats(filepath=str(path), file_format="GLB") == {"FINISHED"}
    back = read_splats(path)
    np.testing.assert_allclose(back.means, splats.means, atol=1e-6)
    assert back.sh_degree == 2
    assert bpy.ops.splatwork.export_splats(filepath=str(tmp_path / "out.gltf")) == {"FINISHED"}
    assert len(read_splats(tmp_path / "out.gltf")) == 40


def test_headless_command_exports_glb(blender_with_splatwork, splatwork, tmp_path, capsys):
    cli = splatwork.addon.headless.cli
    assert cli.main(["--splats", str(tmp_path / "in.ply"), "--export", "x.obj"]) == 2
    assert "--export x.obj: the name must end in one of" in capsys.readouterr().err
    splats = random_splats(25, 3)
    write_splats(tmp_path / "in.ply", splats)
    assert cli.main(["--splats", str(tmp_path / "in.ply"), "--export", str(tmp_path / "web" / "out.glb")]) == 0
    back = read_splats(tmp_path / "web" / "out.glb")
    assert len(back) == 25 and back.sh_degree == 3


def _bad_glb(tmp_path: Path, splats: SplatSet, spoil) -> Path:
    """A glb with a triangle mesh next to a splat primitive that ``spoil(doc)`` breaks."""
    doc, arrays = gltf.document(splats, "Splats")
    tri = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    offset = doc["buffers"][0]["byteLength"]
    doc["bufferViews"].append({"buffer": 0, "byteOffset": offset, "byteLength": tri.nbytes})
    doc["accessors"].append({"bufferView": len(doc["bufferViews"]) - 1, "componentType": 5126, "count": 3,
                             "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 0]})
    doc["meshes"].append({"name": "Tri", "primitives": [{"attributes": {"POSITION": len(doc["accessors"]) - 1}}]})
    doc["nodes"].append({"name": "Tri", "mesh": 1})
    doc["scenes"][0]["nodes"].append(1)
    arrays.append(tri)
    doc["buffers"][0]["byteLength"] = offset + tri.nbytes
    spoil(doc)
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    body = b"".join(a.tobytes() + b"\0" * (-a.nbytes % 4) for a in arrays)
    path = tmp_path / "bad.glb"
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 28 + len(text) + len(body)) + struct.pack("<II", len(text),
                     0x4E4F534A) + text + struct.pack("<II", len(body), 0x004E4942) + body)
    return path


def _attribute(doc, name):
    return doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"][name]]


BAD = {
    "missing": (lambda d: d["meshes"][0]["primitives"][0]["attributes"].pop(gltf.SCALE), "SCALE is missing"),
    "mismatched": (lambda d: _attribute(d, gltf.OPACITY).update(count=10), "accessor 3"),
    "past the file": (lambda d: _attribute(d, gltf.ROTATION).update(count=10 ** 9), "accessor 1"),
    "draco": (lambda d: d["meshes"][0]["primitives"][0]["extensions"].update(
        KHR_draco_mesh_compression={"bufferView": 0, "attributes": {}}), "Draco"),
    "meshopt": (lambda d: d["bufferViews"][2].update(
        extensions={"EXT_meshopt_compression": {"buffer": 0, "byteLength": 4, "byteStride": 12, "count": 1,
                                                "mode": "ATTRIBUTES"}}), "meshopt"),
    "unknown version": (lambda d: d["meshes"][0]["primitives"][0]["extensions"][gltf.EXTENSION].pop("kernel"),
                        r"unknown \(pre-release\?\) version"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_splat_primitive_is_refused_by_name_and_the_rest_imports(blender_with_splatwork, splatwork, tmp_path,
                                                                      case):
    spoil, words = BAD[case]
    path = _bad_glb(tmp_path, random_splats(30, 1), spoil)
    with pytest.raises(RuntimeError, match=words):
        bpy.ops.import_scene.gltf(filepath=str(path))
    assert not splat_objects(splatwork) and len(bpy.data.pointclouds) == 0, "nothing half-imported"
    assert bpy.context.scene.objects["Tri"].type == "MESH", "the rest of the scene still imports"


def test_nan_in_a_splat_attribute_is_refused_by_name(blender_with_splatwork, splatwork, tmp_path):
    path = _bad_glb(tmp_path, random_splats(30, 1), lambda d: None)
    doc = glb_json(path)
    view = doc["bufferViews"][_attribute(doc, gltf.sh_semantic(1, 2))["bufferView"]]
    data = bytearray(path.read_bytes())
    at = 28 + struct.unpack_from("<I", data, 12)[0] + view["byteOffset"] + 4 * (7 * 3 + 1)
    data[at:at + 4] = struct.pack("<f", float("nan"))
    path.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match=r"SH_DEGREE_1_COEF_2\) has a non-finite value .* element 7"):
        bpy.ops.import_scene.gltf(filepath=str(path))
    assert not splat_objects(splatwork) and bpy.context.scene.objects["Tri"].type == "MESH"


def test_without_the_glTF_add_on_nothing_breaks_and_without_ours_glTF_still_imports(blender_with_splatwork,
                                                                                     splatwork, tmp_path):
    write_splats(tmp_path / "a.ply", random_splats(20, 1))
    glb = tmp_path / "a.glb"
    write_splats(glb, random_splats(20, 1))
    try:
        bpy.ops.preferences.addon_disable(module="io_scene_gltf2")
        assert not hasattr(bpy.types, "EXPORT_SCENE_OT_gltf")
        assert bpy.ops.splatwork.import_splats(filepath=str(tmp_path / "a.ply")) == {"FINISHED"}
        assert bpy.ops.splatwork.import_splats(filepath=str(glb)) == {"FINISHED"}, "Splatwork reads .glb itself"
    finally:
        bpy.ops.preferences.addon_enable(module="io_scene_gltf2")
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    try:
        bpy.ops.preferences.addon_disable(module=EXTENSION_MODULE)
        assert bpy.ops.import_scene.gltf(filepath=str(glb)) == {"FINISHED"}
        (obj,) = bpy.context.scene.objects  # the glTF add-on's own reading: points (a splat on 5.3)
        assert len(obj.data.vertices if obj.type == "MESH" else obj.data.points) == 20
    finally:
        bpy.ops.preferences.addon_enable(module=EXTENSION_MODULE)
