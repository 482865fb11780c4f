"""Splat file formats on real files: PLY layouts, and the lossy formats decoded against each other."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_data
from scipy.spatial import cKDTree

from bridge.formats import FormatError, FormatWarning, detect_format, read_splats, write_splats
from bridge.formats.ply_elements import read_elements
from bridge.formats.spz import flip_yz


def random_splats(n: int = 50, degree: int = 3, seed: int = 0):
    from bridge.formats import SplatSet
    from bridge.formats.splatset import SH_REST_COUNT

    rng = np.random.default_rng(seed)
    f = np.float32
    return SplatSet(
        means=rng.uniform(-5, 5, (n, 3)).astype(f),
        scales=rng.uniform(-6, 0, (n, 3)).astype(f),
        quats=rng.normal(size=(n, 4)).astype(f),
        opacities=rng.uniform(-4, 4, n).astype(f),
        sh_dc=rng.uniform(-1.5, 1.5, (n, 3)).astype(f),
        sh_rest=rng.uniform(-0.5, 0.5, (n, SH_REST_COUNT[degree], 3)).astype(f),
    )


def write_ply_by_hand(path, columns: dict[str, np.ndarray], fmt="binary_little_endian", kind="f4"):
    """A PLY written without our writer, so the reader is checked against an independent file."""
    n = len(next(iter(columns.values())))
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt, "<")
    ply_name = {"f4": "float", "f8": "double", "u1": "uchar"}
    lines = ["ply", f"format {fmt} 1.0", f"element vertex {n}"]
    lines += [f"property {ply_name[kind]} {name}" for name in columns]
    header = ("\n".join(lines + ["end_header"]) + "\n").encode()
    if fmt == "ascii":
        body = "\n".join(" ".join(repr(float(columns[c][i])) for c in columns) for i in range(n)) + "\n"
        path.write_bytes(header + body.encode())
        return
    rows = np.empty(n, [(name, order + kind) for name in columns])
    for name, values in columns.items():
        rows[name] = values
    path.write_bytes(header + rows.tobytes())


def inria_columns(splats, normals=True) -> dict[str, np.ndarray]:
    n, k = len(splats), splats.sh_rest.shape[1]
    cols = {"x": splats.means[:, 0], "y": splats.means[:, 1], "z": splats.means[:, 2]}
    if normals:
        cols |= {"nx": np.zeros(n), "ny": np.zeros(n), "nz": np.zeros(n)}
    cols |= {f"f_dc_{c}": splats.sh_dc[:, c] for c in range(3)}
    cols |= {f"f_rest_{c * k + i}": splats.sh_rest[:, i, c] for c in range(3) for i in range(k)}
    cols["opacity"] = splats.opacities
    cols |= {f"scale_{i}": splats.scales[:, i] for i in range(3)}
    cols |= {f"rot_{i}": splats.quats[:, i] for i in range(4)}
    return cols


def assert_same(a, b):
    for name in ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def quat_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest component difference of the normalised rotations, q and -q being the same rotation."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True).astype(np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True).astype(np.float64)
    b = b * np.where((a * b).sum(axis=1, keepdims=True) < 0, -1.0, 1.0)
    return float(np.abs(a - b).max())


# ---- standard PLY -------------------------------------------------------------------------------

def test_real_ply_round_trips_to_identical_bytes(tmp_path):
    source = shared_data("splats", "plush_dog.ply")
    splats = read_splats(source)
    assert (len(splats), splats.sh_degree, splats.extras) == (15105, 3, {})
    out = tmp_path / "copy.ply"
    write_splats(out, splats)
    assert out.read_bytes() == source.read_bytes()


def test_f_rest_is_channel_major(tmp_path):
    splats = random_splats(4, degree=2)
    k = 8
    # f_rest_{c*K+k} = 100 c + k makes any transposition visible.
    splats.sh_rest[:] = (100 * np.arange(3)[None, :] + np.arange(k)[:, None])[None].astype(np.float32)
    write_ply_by_hand(tmp_path / "s.ply", inria_columns(splats))
    back = read_splats(tmp_path / "s.ply")
    assert back.sh_rest.shape == (4, 8, 3)
    assert back.sh_rest[0, 5, 2] == 205.0 and back.sh_rest[3, 7, 1] == 107.0


@pytest.mark.parametrize("fmt,kind", [("binary_big_endian", "f4"), ("binary_little_endian", "f8"),
                                      ("binary_big_endian", "f8"), ("ascii", "f4")])
@pytest.mark.parametrize("degree", [0, 1, 3])
def test_ply_layouts_read_the_same_splats(tmp_path, fmt, kind, degree):
    splats = random_splats(20, degree)
    path = tmp_path / "s.ply"
    write_ply_by_hand(path, inria_columns(splats, normals=degree != 1), fmt, kind)
    back = read_splats(path)
    assert back.sh_degree == degree and back.extras == {}
    assert_same(back, splats)  # float32 values survive double and repr() exactly


def test_extras_and_nonzero_normals_round_trip_bit_exactly(tmp_path):
    splats = random_splats(30, 1)
    cols = inria_columns(splats)
    cols["nx"] = np.linspace(-1, 1, 30)
    cols["segment"] = np.arange(30) % 7
    write_ply_by_hand(tmp_path / "in.ply", cols)
    back = read_splats(tmp_path / "in.ply")
    assert sorted(back.extras) == ["nx", "segment"]
    write_splats(tmp_path / "out.ply", back)
    again = read_splats(tmp_path / "out.ply")
    assert_same(again, splats)
    for name in back.extras:
        np.testing.assert_array_equal(again.extras[name], back.extras[name])


def test_integer_extras_keep_their_type(tmp_path):
    splats = random_splats(10, 0)
    splats.extras["label"] = np.arange(10, dtype=np.uint8)
    write_splats(tmp_path / "s.ply", splats)
    header, arrays = read_elements(tmp_path / "s.ply")
    assert arrays["vertex"].dtype["label"] == np.dtype("u1")
    assert read_splats(tmp_path / "s.ply").extras["label"].dtype == np.uint8


def test_trailing_byte_is_accepted_with_a_warning():
    with pytest.warns(FormatWarning, match="1 unexpected byte"):
        splats = read_splats(shared_data("splats", "three_points_trailing_byte.ply"))
    assert len(splats) == 3 and splats.sh_degree == 3


def test_sh_degree_option_truncates(tmp_path):
    write_splats(tmp_path / "s.ply", random_splats(5, 3), sh_degree=1)
    assert read_splats(tmp_path / "s.ply").sh_degree == 1


def test_failed_write_leaves_the_old_file_and_no_debris(tmp_path):
    target = tmp_path / "keep.ply"
    write_splats(target, random_splats(5, 0))
    before = target.read_bytes()
    bad = random_splats(5, 0)
    bad.extras["id"] = np.arange(5, dtype=np.int64)  # PLY has no 64-bit integers
    with pytest.raises(FormatError, match="extra property 'id'"):
        write_splats(target, bad)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.ply"]


# ---- detection ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt,name", [("ply", "a.splat"), ("compressed_ply", "b.ply"), ("spz", "c.bin"),
                                      ("splat", "d.dat")])
def test_format_comes_from_content_not_name(tmp_path, fmt, name):
    written = tmp_path / f"x.{fmt}"
    with pytest.warns(FormatWarning) if fmt == "splat" else _nothing():
        write_splats(written, random_splats(300, 1), fmt=fmt)
    renamed = tmp_path / name
    written.rename(renamed)
    assert detect_format(renamed) == fmt
    assert len(read_splats(renamed)) == 300


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---- lossy formats against real files -----------------------------------------------------------

def _chunk_steps(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-splat quantisation steps of a compressed PLY: position, log-scale, colour."""
    _, elements = read_elements(path, {"chunk", "vertex"})
    chunk, n = elements["chunk"], len(elements["vertex"])

    def steps(lo, hi, bits):
        span = np.stack([chunk[h] - chunk[lo_] for lo_, h in zip(lo, hi, strict=True)], axis=1)
        return np.repeat(span / (np.array(bits) - 1.0), 256, axis=0)[:n]

    pos = steps(["min_x", "min_y", "min_z"], ["max_x", "max_y", "max_z"], [2048, 1024, 2048])
    scale = steps(["min_scale_x", "min_scale_y", "min_scale_z"], ["max_scale_x", "max_scale_y", "max_scale_z"],
                  [2048, 1024, 2048])
    color = steps(["min_r", "min_g", "min_b"], ["max_r", "max_g", "max_b"], [256, 256, 256])
    return pos, scale, color


def test_plush_dog_compressed_decodes_to_the_ply_splats():
    ply_path = shared_data("splats", "plush_dog.ply")
    compressed_path = shared_data("splats", "plush_dog.compressed.ply")
    full, packed = read_splats(ply_path), read_splats(compressed_path)
    assert (len(packed), packed.sh_degree) == (15105, 3)
    # SuperSplat stores splats in Morton order: pair each with its nearest original.
    _, index = cKDTree(full.means).query(packed.means)
    assert len(np.unique(index)) == len(full)
    ref = full.subset(index)
    pos_step, scale_step, color_step = _chunk_steps(compressed_path)
    assert (np.abs(packed.means - ref.means) <= pos_step / 2 + 1e-6).all()
    assert (np.abs(packed.scales - ref.scales) <= scale_step / 2 + 1e-5).all()
    from bridge.formats import SH_C0
    assert (np.abs(packed.sh_dc - ref.sh_dc) <= color_step / 2 / SH_C0 + 1e-4).all()
    assert np.abs(packed.alphas() - ref.alphas()).max() <= 0.5 / 255 + 1e-6
    assert quat_error(packed.quats, ref.quats) <= 0.0025
    assert np.abs(packed.sh_rest - np.clip(ref.sh_rest, -4, 4)).max() <= 1 / 64 + 1e-6


def test_biker_spz_matches_compressed_ply_after_the_axis_flip():
    compressed_path = shared_data("splats", "biker.compressed.ply")
    spz = read_splats(shared_data("splats", "biker.spz"))
    ref = read_splats(compressed_path)
    assert len(spz) == len(ref) == 152746
    pos_step, scale_step, color_step = _chunk_steps(compressed_path)
    # Both files list the splats in the same order; SPZ's y and z axes are flipped (RUB vs RDF).
    assert (np.abs(spz.means - ref.means) <= 2.0 ** -13 + 1e-6).all()
    raw = flip_yz(spz)
    assert np.abs(raw.means[:, 1] + ref.means[:, 1]).max() < 1e-3
    assert np.abs(raw.means[:, 1] - ref.means[:, 1]).max() > 1.0
    assert quat_error(spz.quats, ref.quats) <= 0.005  # two quantisations
    assert np.abs(spz.alphas() - ref.alphas()).max() <= 1 / 255 + 1e-6
    from bridge.formats import SH_C0
    assert (np.abs(spz.sh_dc - ref.sh_dc) <= 0.5 / (255 * 0.15) + color_step / SH_C0 + 1e-4).all()
    in_range = (ref.scales > -10) & (ref.scales < 5.9)
    assert (np.abs(spz.scales - ref.scales)[in_range] <= 1 / 32 + 1e-5).all()
    assert (spz.scales[~in_range] == -10).all()  # SPZ clamps tiny scales to its range


def test_tiny_compressed_ply_with_sh():
    splats = read_splats(shared_data("splats", "tiny_64.compressed.ply"))
    assert (len(splats), splats.sh_degree) == (64, 3)
    assert np.isfinite(splats.sh_rest).all() and np.abs(splats.sh_rest).max() <= 4


@pytest.mark.parametrize("fmt", ["ply", "compressed_ply"])
def test_read_splats_hold_no_mapping_of_the_file(tmp_path, fmt):
    """Returned arrays are plain, writable and contiguous; none may keep the file open (Windows)."""
    path = tmp_path / "s.ply"
    splats = random_splats(300, 2)
    splats.extras["label"] = np.arange(300, dtype=np.uint8)
    with pytest.warns(FormatWarning) if fmt == "compressed_ply" else _nothing():
        write_splats(path, splats, fmt=fmt)
    back = read_splats(path)
    arrays = [back.means, back.scales, back.quats, back.opacities, back.sh_dc, back.sh_rest, *back.extras.values()]
    for array in arrays:
        base = array
        while base is not None:
            assert not isinstance(base, np.memmap)
            base = base.base
        assert array.flags.c_contiguous and array.flags.writeable


def test_spz_version_1_float16_positions(tmp_path):
    """Version 1 (float16 positions, 3-byte rotations) is still found in the wild; read it."""
    import gzip
    import struct

    from bridge.formats.spz import encode

    splats = random_splats(20, 1)
    blocks = encode(flip_yz(splats), 2, 12)
    blocks[0] = flip_yz(splats).means.astype("<f2").tobytes()
    header = struct.pack("<4sIIBBBB", b"NGSP", 1, 20, 1, 0, 0, 0)
    (tmp_path / "v1.spz").write_bytes(gzip.compress(header + b"".join(blocks)))
    back = read_splats(tmp_path / "v1.spz")
    np.testing.assert_allclose(back.means, splats.means, atol=5 / 1024 * 5)
    assert quat_error(back.quats, splats.quats) < 0.12


def test_spz_degree_4_keeps_bands_1_to_3_and_warns(tmp_path):
    import gzip
    import struct

    from bridge.formats.spz import encode

    splats = random_splats(10, 3)
    blocks = encode(flip_yz(splats), 3, 12)
    band4 = np.full((10, 9, 3), 200, np.uint8)
    blocks[5] = np.concatenate([np.frombuffer(blocks[5], np.uint8).reshape(10, 15, 3), band4], axis=1).tobytes()
    header = struct.pack("<4sIIBBBB", b"NGSP", 3, 10, 4, 12, 0, 0)
    (tmp_path / "d4.spz").write_bytes(gzip.compress(header + b"".join(blocks)))
    with pytest.warns(FormatWarning, match="band 4"):
        back = read_splats(tmp_path / "d4.spz")
    assert back.sh_degree == 3
    assert np.abs(back.sh_rest - splats.sh_rest).max() <= 8.5 / 128 + 1e-6


def test_one_table_of_formats_gives_names_extensions_and_labels():
    from bridge.formats import table

    assert table.FORMAT_NAMES == ("ply", "compressed_ply", "splat", "spz", "glb", "gltf")
    assert table.FILE_EXTENSIONS == (".ply", ".splat", ".spz", ".glb", ".gltf")
    assert table.extensions_text() == ".ply, .splat, .spz, .glb, .gltf"
    for name, path in [("compressed_ply", "a.Compressed.PLY"), ("ply", "a.b.ply"), ("splat", "x.splat"),
                       ("spz", "x.SPZ"), ("glb", "scene.GLB"), ("gltf", "a.gltf"), (None, "x.bin")]:
        assert table.format_for_extension(path) == name
    assert table.strip_extension("shot.compressed.ply") == "shot" and table.strip_extension("x.bin") == "x.bin"
