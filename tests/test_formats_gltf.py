"""glTF 2.0 with KHR_gaussian_splatting in bridge.formats (no Blender): round trips, every accessor form
the extension allows (quantised, interleaved, sparse, indexed, external and embedded buffers), node
transforms, colour spaces, and bad input refused with the primitive and accessor named."""
from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_formats import random_splats

from bridge.formats import FormatError, FormatWarning, SplatSet, detect_format, gltf, read_splats, write_splats
from bridge.formats.spz import flip_yz
from bridge.formats.transform import bake_transform

ROOT = Path(__file__).resolve().parent.parent


def assert_glb_equal(got: SplatSet, want: SplatSet) -> None:
    """What a glTF write-then-read keeps: positions and SH exactly; scales, alphas and unit
    quaternions within float32 rounding of exp/log, sigmoid/logit and normalisation."""
    np.testing.assert_array_equal(got.means, want.means)
    np.testing.assert_allclose(got.scales, want.scales, rtol=0, atol=1e-6)
    unit = want.quats / np.linalg.norm(want.quats, axis=1, keepdims=True)
    np.testing.assert_allclose(got.quats, unit, rtol=0, atol=2e-7)
    alpha = 1 / (1 + np.exp(-want.opacities.astype(np.float64)))
    np.testing.assert_allclose(1 / (1 + np.exp(-got.opacities.astype(np.float64))), alpha, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(got.sh_dc, want.sh_dc)
    np.testing.assert_array_equal(got.sh_rest, want.sh_rest)


def write_glb(path: Path, doc: dict, body: bytes) -> Path:
    doc["buffers"] = [{"byteLength": len(body)}]
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    body += b"\0" * (-len(body) % 4)
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 28 + len(text) + len(body))
                     + struct.pack("<II", len(text), 0x4E4F534A) + text
                     + struct.pack("<II", len(body), 0x004E4942) + body)
    return path


def ours(splats: SplatSet) -> tuple[dict, bytes]:
    """Our writer's JSON and buffer for ``splats`` (already in glTF axes)."""
    doc, arrays = gltf.document(splats)
    return doc, b"".join(a.tobytes() + b"\0" * (-a.nbytes % 4) for a in arrays)


def primitive(doc: dict) -> dict:
    return doc["meshes"][0]["primitives"][0]


def accessor_of(doc: dict, semantic: str) -> dict:
    return doc["accessors"][primitive(doc)["attributes"][semantic]]


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_write_then_read_keeps_the_splats(tmp_path, degree, suffix):
    splats = random_splats(60, degree, seed=degree)
    path = tmp_path / f"s{suffix}"
    write_splats(path, splats)
    assert detect_format(path) == suffix[1:]
    assert_glb_equal(read_splats(path), splats)


def test_the_file_is_y_up_glTF_with_the_extension_and_a_fallback_colour(tmp_path):
    splats = random_splats(10, 1)
    write_splats(tmp_path / "s.glb", splats)
    doc = gltf.load(tmp_path / "s.glb")
    prim = primitive(doc.json)
    assert prim["mode"] == 0 and prim["extensions"] == {gltf.EXTENSION: gltf.EXTENSION_OBJECT}
    assert doc.json["extensionsUsed"] == [gltf.EXTENSION] and "extensionsRequired" not in doc.json
    assert set(prim["attributes"]) == {"POSITION", "COLOR_0", gltf.ROTATION, gltf.SCALE, gltf.OPACITY, gltf.SH0,
                                       *gltf.rest_semantics(1)}
    position = accessor_of(doc.json, "POSITION")
    raw = gltf.read_primitive(doc, 0, 0)  # the file's own (glTF, RUB) axes
    np.testing.assert_array_equal(raw.means, flip_yz(splats).means)
    assert position["min"] == raw.means.min(axis=0).tolist() and position["max"] == raw.means.max(axis=0).tolist()
    colour, _ = gltf.accessor(doc, prim["attributes"]["COLOR_0"], "test")
    alpha = 1 / (1 + np.exp(-splats.opacities))
    np.testing.assert_allclose(colour[:, 3] / 255, alpha, atol=0.5 / 255 + 1e-6)


def test_extras_survive_where_float32_holds_them(tmp_path):
    splats = random_splats(20, 0)
    splats.extras = {"f_extra": np.linspace(0, 1, 20, dtype=np.float32), "label": np.arange(20, dtype=np.uint8),
                     "id": np.arange(20, dtype=np.int64) * 2 ** 40 + 1}
    with pytest.warns(FormatWarning, match="id"):
        write_splats(tmp_path / "x.glb", splats)
    back = read_splats(tmp_path / "x.glb")
    assert sorted(back.extras) == ["f_extra", "label"]
    assert back.extras["label"].dtype == np.uint8
    np.testing.assert_array_equal(back.extras["label"], splats.extras["label"])
    np.testing.assert_array_equal(back.extras["f_extra"], splats.extras["f_extra"])


def test_convert_on_the_command_line(tmp_path):
    write_splats(tmp_path / "in.ply", random_splats(30, 2))
    for out in ("out.glb", "out.gltf"):
        run = subprocess.run([sys.executable, "-m", "bridge.formats", "convert", str(tmp_path / "in.ply"),
                              str(tmp_path / out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
    run = subprocess.run([sys.executable, "-m", "bridge.formats", "convert", str(tmp_path / "out.glb"),
                          str(tmp_path / "back.ply")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert_glb_equal(read_splats(tmp_path / "back.ply"), read_splats(tmp_path / "in.ply"))
    info = subprocess.run([sys.executable, "-m", "bridge.formats", "info", "--json", str(tmp_path / "out.glb")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert json.loads(info.stdout)["format"] == "glb" and json.loads(info.stdout)["sh_degree"] == 2


def test_real_plush_dog_round_trips(tmp_path):
    from conftest import shared_data

    dog = read_splats(shared_data("splats", "plush_dog.ply"))
    write_splats(tmp_path / "dog.glb", dog)
    assert_glb_equal(read_splats(tmp_path / "dog.glb"), dog)


# ------------------------------------------------------------------------------------------------
# Every form of accessor the extension allows, as other writers make them


def test_quantised_interleaved_sparse_and_indexed_accessors(tmp_path):
    """ROTATION as normalised shorts, SCALE as unsigned shorts, OPACITY as normalised bytes, POSITION
    and SH interleaved in one strided view, a sparse SH accessor and an index list."""
    n = 8
    rng = np.random.default_rng(1)
    pos = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    sh0 = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    interleaved = np.concatenate([pos, sh0], axis=1)  # 24-byte rows
    quat = rng.normal(size=(n, 4))
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    rot_i16 = np.rint(quat * 32767).astype("<i2")
    scale_u16 = rng.integers(1, 3000, (n, 3)).astype("<u2")
    alpha_u8 = rng.integers(0, 256, n).astype("<u1")
    band1 = np.zeros((n, 3), np.float32)
    sparse_index = np.array([2, 5], "<u4")
    sparse_values = np.array([[0.1, 0.2, 0.3], [-0.4, 0.5, -0.6]], np.float32)
    order = np.array([7, 0, 3, 1], "<u2")
    blobs = [interleaved, rot_i16, scale_u16, alpha_u8, band1, sparse_index, sparse_values, order]
    body, views = b"", []
    for blob in blobs:
        views.append({"buffer": 0, "byteOffset": len(body), "byteLength": blob.nbytes})
        body += blob.tobytes() + b"\0" * (-blob.nbytes % 4)
    views[0]["byteStride"] = 24
    acc = [
        {"bufferView": 0, "componentType": 5126, "count": n, "type": "VEC3"},
        {"bufferView": 0, "byteOffset": 12, "componentType": 5126, "count": n, "type": "VEC3"},
        {"bufferView": 1, "componentType": 5122, "normalized": True, "count": n, "type": "VEC4"},
        {"bufferView": 2, "componentType": 5123, "count": n, "type": "VEC3"},
        {"bufferView": 3, "componentType": 5121, "normalized": True, "count": n, "type": "SCALAR"},
        {"bufferView": 4, "componentType": 5126, "count": n, "type": "VEC3"},
        {"bufferView": 4, "componentType": 5126, "count": n, "type": "VEC3", "sparse": {
            "count": 2, "indices": {"bufferView": 5, "componentType": 5125},
            "values": {"bufferView": 6}}},
        {"bufferView": 7, "componentType": 5123, "count": 4, "type": "SCALAR"},
    ]
    attributes = {"POSITION": 0, gltf.SH0: 1, gltf.ROTATION: 2, gltf.SCALE: 3, gltf.OPACITY: 4,
                  gltf.sh_semantic(1, 0): 5, gltf.sh_semantic(1, 1): 6, gltf.sh_semantic(1, 2): 5}
    doc = {"asset": {"version": "2.0"}, "extensionsUsed": [gltf.EXTENSION],
           "meshes": [{"primitives": [{"attributes": attributes, "mode": 0, "indices": 7,
                                       "extensions": {gltf.EXTENSION: {"kernel": "ellipse",
                                                                       "colorSpace": "srgb_rec709_display"}}}]}],
           "nodes": [{"mesh": 0}], "scenes": [{"nodes": [0]}], "accessors": acc, "bufferViews": views}
    got = gltf.read_primitive(gltf.load(write_glb(tmp_path / "q.glb", doc, body)), 0, 0)
    pick = order.astype(int)
    np.testing.assert_array_equal(got.means, pos[pick])
    np.testing.assert_array_equal(got.sh_dc, sh0[pick])
    np.testing.assert_allclose(got.quats, (rot_i16 / 32767)[pick][:, [3, 0, 1, 2]], atol=1e-4)
    np.testing.assert_allclose(got.scales, np.log(scale_u16[pick].astype(np.float64)), atol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-got.opacities)), alpha_u8[pick] / 255, atol=1e-6)
    want_coef1 = np.zeros((n, 3), np.float32)
    want_coef1[[2, 5]] = sparse_values
    np.testing.assert_array_equal(got.sh_rest[:, 1], want_coef1[pick])
    np.testing.assert_array_equal(got.sh_rest[:, 0], 0)


def test_gltf_with_an_external_buffer_beside_it(tmp_path):
    splats = random_splats(12, 1)
    doc, body = ours(flip_yz(splats))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "splats data.bin").write_bytes(body)
    doc["buffers"][0]["uri"] = "data/splats%20data.bin"
    (tmp_path / "ext.gltf").write_text(json.dumps(doc))
    assert_glb_equal(read_splats(tmp_path / "ext.gltf"), splats)
    doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(body).decode()
    (tmp_path / "embedded.json").write_text(json.dumps(doc))
    assert detect_format(tmp_path / "embedded.json") == "gltf"
    assert_glb_equal(read_splats(tmp_path / "embedded.json"), splats)


def test_node_transforms_are_baked_in_world_space(tmp_path):
    splats = random_splats(30, 2)
    doc, body = ours(splats)
    doc["nodes"] = [{"name": "parent", "translation": [1, 2, 3], "rotation": [0, 0.6, 0, 0.8], "scale": [2, 2, 2],
                     "children": [1]},
                    {"name": "child", "mesh": 0, "matrix": [0, 1, 0, 0, -1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5, 1]}]
    got = read_splats(write_glb(tmp_path / "n.glb", doc, body))
    parent = gltf.node_matrix(None, doc["nodes"][0], "nodes[0]")
    child = np.array(doc["nodes"][1]["matrix"], float).reshape(4, 4).T
    want = flip_yz(bake_transform(splats, parent @ child))
    np.testing.assert_allclose(got.means, want.means, atol=1e-5)
    np.testing.assert_allclose(got.sh_rest, want.sh_rest, atol=1e-5)
    np.testing.assert_allclose(np.abs(got.quats), np.abs(want.quats), atol=1e-5)


def test_two_nodes_one_mesh_and_primitives_of_different_degrees_merge(tmp_path):
    a, b = random_splats(10, 0, seed=1), random_splats(7, 2, seed=2)
    doc_a, body_a = ours(a)
    doc_b, body_b = ours(b)
    shift = len(body_a)
    offset = len(doc_a["accessors"])
    for view in doc_b["bufferViews"]:
        view["byteOffset"] += shift
    for acc in doc_b["accessors"]:
        acc["bufferView"] += len(doc_a["bufferViews"])
    prim_b = primitive(doc_b)
    prim_b["attributes"] = {k: v + offset for k, v in prim_b["attributes"].items()}
    doc_a["accessors"] += doc_b["accessors"]
    doc_a["bufferViews"] += doc_b["bufferViews"]
    primitive(doc_a)  # the first
    doc_a["meshes"][0]["primitives"].append(prim_b)
    doc_a["nodes"] = [{"mesh": 0}, {"mesh": 0, "translation": [10, 0, 0]}]
    doc_a["scenes"] = [{"nodes": [0, 1]}]
    got = read_splats(write_glb(tmp_path / "m.glb", doc_a, body_a + body_b))
    assert len(got) == 2 * 17 and got.sh_degree == 2
    np.testing.assert_allclose(got.means[17:27, 0] - got.means[:10, 0], 10, atol=1e-5)
    np.testing.assert_array_equal(got.sh_rest[:10], 0)


def test_linear_colour_space_is_converted_to_srgb(tmp_path):
    splats = random_splats(20, 1)
    doc, body = ours(splats)
    primitive(doc)["extensions"][gltf.EXTENSION]["colorSpace"] = "lin_rec709_display"
    got = gltf.read_primitive(gltf.load(write_glb(tmp_path / "lin.glb", doc, body)), 0, 0)
    linear = np.clip(0.5 + 0.28209479 * splats.sh_dc, 0, 1)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    np.testing.assert_allclose(np.clip(0.5 + 0.28209479 * got.sh_dc, 0, 1), srgb, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Bad input: one clear message naming the primitive and accessor; never another exception


def spoiled(tmp_path: Path, spoil, splats: SplatSet | None = None) -> Path:
    doc, body = ours(splats if splats is not None else random_splats(16, 1))
    spoil(doc)
    return write_glb(tmp_path / "bad.glb", doc, body)


BAD = {
    "missing accessor": (lambda d: primitive(d)["attributes"].pop(gltf.ROTATION),
                         "the required attribute KHR_gaussian_splatting:ROTATION is missing"),
    "dangling accessor": (lambda d: primitive(d)["attributes"].update({gltf.SCALE: 99}), r"accessors\[99\]"),
    "mismatched count": (lambda d: accessor_of(d, gltf.SCALE).update(count=3),
                         r"accessor 2 \(KHR_gaussian_splatting:SCALE\) has 3 elements, POSITION has 16"),
    "count over the file": (lambda d: accessor_of(d, gltf.SH0).update(count=2 ** 40),
                            "accessor 4: 1,099,511,627,776 elements need"),
    "view past the buffer": (lambda d: d["bufferViews"][1].update(byteLength=10 ** 9), "runs past the end"),
    "wrong type": (lambda d: accessor_of(d, gltf.OPACITY).update(type="VEC2"),
                   r"accessor 3 \(KHR_gaussian_splatting:OPACITY\) is VEC2 FLOAT"),
    "integer SH": (lambda d: accessor_of(d, gltf.SH0).update(componentType=5121, normalized=True, count=4),
                   "the extension allows VEC3 of FLOAT"),
    "partial degree": (lambda d: primitive(d)["attributes"].pop(gltf.sh_semantic(1, 1)),
                       "SH degree 1 is partly defined: KHR_gaussian_splatting:SH_DEGREE_1_COEF_1 is missing"),
    "skipped degree": (lambda d: primitive(d)["attributes"].update({gltf.sh_semantic(3, 0): 0}),
                       "SH_DEGREE_3_COEF_0 is given without every lower SH coefficient"),
    "triangles": (lambda d: primitive(d).update(mode=4), "must have mode POINTS"),
    "unknown version": (lambda d: primitive(d)["extensions"][gltf.EXTENSION].pop("colorSpace"),
                        "no 'colorSpace': an unknown"),
    "unknown colour space": (lambda d: primitive(d)["extensions"][gltf.EXTENSION].update(colorSpace="acescg"),
                             "colorSpace 'acescg' is unknown"),
    "draco": (lambda d: primitive(d)["extensions"].update(KHR_draco_mesh_compression={"bufferView": 0}),
              r"primitives\[0\] is Draco-compressed"),
    "meshopt": (lambda d: d["bufferViews"][0].update(extensions={"EXT_meshopt_compression": {}}),
                "POSITION: accessor 0: bufferView 0 is meshopt-compressed"),
    "spz compression": (lambda d: primitive(d)["extensions"][gltf.EXTENSION].update(
        extensions={"KHR_gaussian_splatting_compression_spz_2": {"bufferView": 0}}),
        "extended by KHR_gaussian_splatting_compression_spz_2, which Splatwork does not decode"),
    "no data": (lambda d: accessor_of(d, gltf.SCALE).pop("bufferView"), "has no data"),
    "glTF 3": (lambda d: d["asset"].update(version="3.0"), r"asset.version 3.0 is not supported"),
    "no splats": (lambda d: primitive(d).pop("extensions"), "no KHR_gaussian_splatting primitive"),
    "node cycle": (lambda d: d["nodes"].__setitem__(0, {"mesh": 0, "children": [0]}), "not a tree"),
    "external file outside": (lambda d: d["buffers"].__setitem__(0, {"byteLength": 4, "uri": "../secret.bin"}),
                              "outside the glTF's folder"),
    "download": (lambda d: d["buffers"].__setitem__(0, {"byteLength": 4, "uri": "https://example.com/a.bin"}),
                 "nothing is downloaded"),
    "nodes over the budget": (lambda d: d.update(nodes=[{"mesh": 0}] * 40000, scenes=[{"nodes": list(range(40000))}]),
                              "would decode to more than"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_the_primitive_and_accessor(tmp_path, case):
    spoil, words = BAD[case]
    if case in ("external file outside", "download"):  # write_glb would set buffers: write the JSON form
        doc, _ = ours(random_splats(4, 0))
        spoil(doc)
        path = tmp_path / "bad.gltf"
        path.write_text(json.dumps(doc))
    else:
        path = spoiled(tmp_path, spoil)
    with pytest.raises(FormatError, match=words) as caught:
        read_splats(path)
    assert caught.value.path == str(path)


@pytest.mark.parametrize("semantic, row, column, value, words", [
    (gltf.OPACITY, 5, 0, 1.0, None),  # an alpha of exactly 1 is fine
    (gltf.sh_semantic(1, 2), 5, 1, float("nan"),
     r"accessor 7 \(KHR_gaussian_splatting:SH_DEGREE_1_COEF_2\) has a non-finite value \(NaN or Inf\) at element 5"),
    ("POSITION", 9, 0, float("inf"), r"accessor 0 \(POSITION\) has a non-finite value \(NaN or Inf\) at element 9"),
])
def test_non_finite_values_are_named(tmp_path, semantic, row, column, value, words):
    doc, body = ours(random_splats(16, 1))
    acc = accessor_of(doc, semantic)
    width = {"SCALAR": 1, "VEC3": 3}[acc["type"]]
    at = doc["bufferViews"][acc["bufferView"]]["byteOffset"] + 4 * (row * width + column)
    data = bytearray(body)
    data[at:at + 4] = struct.pack("<f", value)
    path = write_glb(tmp_path / "nan.glb", doc, bytes(data))
    if words is None:
        assert len(read_splats(path)) == 16
    else:
        with pytest.raises(FormatError, match=words):
            read_splats(path)


def test_out_of_range_opacity_and_negative_scale_are_refused(tmp_path):
    splats = random_splats(16, 0)
    doc, body = ours(splats)
    data = bytearray(body)
    opacity = accessor_of(doc, gltf.OPACITY)
    start = doc["bufferViews"][opacity["bufferView"]]["byteOffset"]
    data[start + 4:start + 8] = struct.pack("<f", 1.5)
    with pytest.raises(FormatError, match=r"accessor 3 \(KHR_gaussian_splatting:OPACITY\) has \[1.5\] at element 1"):
        read_splats(write_glb(tmp_path / "a.glb", doc, bytes(data)))
    data = bytearray(body)
    scale = accessor_of(doc, gltf.SCALE)
    start = doc["bufferViews"][scale["bufferView"]]["byteOffset"]
    data[start:start + 4] = struct.pack("<f", -0.5)
    with pytest.raises(FormatError, match=r"SCALE\) has .* at element 0, outside >= 0"):
        read_splats(write_glb(tmp_path / "b.glb", doc, bytes(data)))


def test_broken_glb_containers(tmp_path):
    write_splats(tmp_path / "good.glb", random_splats(8, 0))
    data = (tmp_path / "good.glb").read_bytes()
    cases = {
        "truncated": (data[:-40], "truncated"),
        "version 1": (data[:4] + struct.pack("<I", 1) + data[8:], "GLB container version 1"),
        "bad json": (data[:20] + b"[" + data[21:], "not valid"),
    }
    for name, (content, words) in cases.items():
        path = tmp_path / f"{name}.glb"
        path.write_bytes(content)
        with pytest.raises(FormatError, match=words):
            read_splats(path)


def test_turning_axes_is_bake_transform_in_float32():
    splats = random_splats(200, 3)
    for rotation, scale in ((gltf.Z_UP_TO_Y_UP, 1.0), (gltf.Z_UP_TO_Y_UP.T, 0.01)):
        matrix = np.eye(4)
        matrix[:3, :3] = rotation * scale
        want = bake_transform(splats, matrix)
        got = gltf.turn(splats, rotation, scale)
        np.testing.assert_allclose(got.means, want.means, rtol=2.4e-7, atol=0)  # one float32 step
        np.testing.assert_allclose(got.scales, want.scales, atol=2e-6)
        sign = np.where(np.sum(got.quats * want.quats, axis=1, keepdims=True) < 0, -1, 1)
        unit = got.quats / np.linalg.norm(got.quats, axis=1, keepdims=True)
        np.testing.assert_allclose(unit * sign, want.quats, atol=1e-6)
        np.testing.assert_allclose(got.sh_rest, want.sh_rest, atol=1e-6)
    with pytest.raises(ValueError):
        gltf.turn(splats, np.diag([1.0, 1.0, -1.0]))  # a mirror is no turn


def test_reading_turned_is_reading_then_turning(tmp_path):
    splats = random_splats(40_000, 3)  # more rows than one gathering block
    write_splats(tmp_path / "s.glb", splats)
    doc = gltf.load(tmp_path / "s.glb")
    want = gltf.turn(gltf.read_primitive(doc, 0, 0), gltf.Z_UP_TO_Y_UP.T, 0.5)
    got = gltf.read_primitive(doc, 0, 0, rotation=gltf.Z_UP_TO_Y_UP.T, scale=0.5)
    for name in ("means", "scales", "quats", "opacities", "sh_dc"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(got.sh_rest, want.sh_rest, rtol=0, atol=1e-6)
