"""Bad input: one clear FormatError naming the file and the problem, never a crash, hang or huge allocation."""
from __future__ import annotations

import gzip
import struct
import tracemalloc
import warnings

import numpy as np
import pytest
from conftest import SHARED_DATA, shared_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_formats import inria_columns, random_splats, write_ply_by_hand

from bridge.formats import FormatError, FormatWarning, SplatSet, read_splats, write_splats


def _ply(tmp_path, splats=None, **changes) -> bytes:
    """Bytes of a small valid binary PLY."""
    path = tmp_path / "valid.ply"
    write_ply_by_hand(path, inria_columns(splats or random_splats(8, 1)))
    return path.read_bytes()


def _written(tmp_path, fmt, n=8, **options) -> bytes:
    path = tmp_path / f"valid.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_splats(path, random_splats(n, 1), fmt=fmt, **options)
    return path.read_bytes()


def _v4_header(n: int) -> bytes:
    return struct.pack("<4sIIBBBBI12s", b"NGSP", 4, n, 0, 12, 0, 5, 32, bytes(12))


CASES = {
    "truncated ply": (lambda t: _ply(t)[:-50], "truncated"),
    "ply header claims 10^12 vertices": (
        lambda t: _ply(t).replace(b"element vertex 8", b"element vertex 1000000000000"), "truncated"),
    "ply header without end": (lambda t: _ply(t)[:200], "end_header"),
    "ply missing rotation": (lambda t: _ply(t).replace(b"property float rot_3\n", b""), "missing properties rot_3"),
    "ply unknown property type": (lambda t: _ply(t).replace(b"property float opacity", b"property quad opacity"),
                                  "unknown property type"),
    "ply odd f_rest count": (lambda t: _ply(t).replace(b"property float f_rest_8\n", b""), "f_rest"),
    "ply zero splats": (lambda t: _ply(t).split(b"end_header\n")[0].replace(b"vertex 8", b"vertex 0")
                        + b"end_header\n", "no splats"),
    "ply with NaN": (lambda t: _ply(t, _with_nan()), "NaN"),
    "ply with Inf": (lambda t: _ply(t, _with_nan(np.inf)), "Inf"),
    "ply list property": (lambda t: _ply(t).replace(b"property float x\n", b"property list uchar int x\n"),
                          "list property"),
    "ply element without properties": (
        lambda t: b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000000000\nend_header\n", "no properties"),
    "jpeg renamed .ply": (lambda t: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100), "JPEG"),
    "empty file": (lambda t: b"", "empty"),
    "compressed ply wrong chunk count": (
        lambda t: _written(t, "compressed_ply", 300).replace(b"element chunk 2", b"element chunk 1"), "chunk"),
    "compressed ply without chunk": (
        lambda t: _written(t, "compressed_ply", 8).replace(b"element chunk", b"element chunky"),
        "compressed PLY|missing properties"),
    "spz gzip truncated": (lambda t: _written(t, "spz", 50, version=3)[:-30], "truncated|corrupt"),
    "spz v4 truncated": (lambda t: _written(t, "spz", 50, version=4)[:-30], "truncated|corrupt"),
    "spz v4 claims 10^9 splats": (lambda t: _v4_header(10**9) + bytes(100), "more than"),
    "spz v4 wrong stream count": (lambda t: _written(t, "spz", 5, version=4)[:15] + b"\x09"
                                  + _written(t, "spz", 5, version=4)[16:], "streams"),
    "spz gzip with 4G splats": (lambda t: gzip.compress(struct.pack("<4sIIBBBB", b"NGSP", 3, 2**32 - 1, 0, 12, 0, 0)),
                                "more than"),
    "spz unknown version": (lambda t: gzip.compress(struct.pack("<4sIIBBBB", b"NGSP", 9, 1, 0, 12, 0, 0)),
                            "version 9"),
    "gzip that is not spz": (lambda t: gzip.compress(b"hello world" * 10), "not SPZ"),
    ".splat of the wrong size": (lambda t: _written(t, "splat")[:-3], "unrecognised|32-byte"),
    # Reproducers of the readers' fuzzing issue, and what tests/fuzzing.py found later.
    "spz gzip cut short with trailing bytes (looped forever)": (
        lambda t: gzip.compress(struct.pack("<4sIIBBBB", b"NGSP", 2, 1, 0, 12, 0, 0) + bytes(5), mtime=0)
        + b"trailing" * 2, "truncated"),
    "compressed ply with a char sh element": (
        lambda t: _written(t, "compressed_ply", 8).replace(b"property uchar f_rest", b"property char f_rest"),
        "is char, uchar wanted"),
    "compressed ply with a float packed_color": (
        lambda t: _written(t, "compressed_ply", 8).replace(b"uint packed_color", b"float packed_color"),
        "is float, uint wanted"),
    "ascii ply with huge counts in a tiny file": (lambda t: _ascii_header(3221225472) + b"0 " * 20, "truncated"),
    "ascii ply with a count beyond any array": (
        lambda t: b"ply\nformat ascii 1.0\nelement vertex " + b"9" * 30 + b"\nproperty float x\nend_header\n1\n",
        "truncated"),
    "ascii ply value that does not fit its type": (
        lambda t: _ascii_header(1, extra=b"property uchar flag\n") + b"0 " * 14 + b"300\n", "'vertex.flag'"),
    "ply with two elements of the same name": (
        lambda t: _ply(t).replace(b"end_header", b"element vertex 0\nproperty float q\nend_header"),
        "second element named 'vertex'"),
    "compressed ply with two vertex elements": (
        lambda t: _written(t, "compressed_ply", 8).replace(b"element chunk", b"element vertex"),
        "second element named 'vertex'"),
}


def _ascii_header(count: int, extra: bytes = b"") -> bytes:
    """An ASCII 3DGS PLY header (14 float properties at SH degree 0) for ``count`` vertices."""
    names = inria_columns(random_splats(1, 0), normals=False)
    return (b"ply\nformat ascii 1.0\nelement vertex %d\n" % count
            + b"".join(b"property float %s\n" % name.encode() for name in names) + extra + b"end_header\n")


def _with_nan(value=np.nan):
    splats = random_splats(8, 1)
    splats.means[3, 1] = value
    return splats


@pytest.mark.parametrize("case", CASES)
def test_bad_file_raises_one_clear_error(tmp_path, case):
    make, problem = CASES[case]
    suffix = ".splat" if case.startswith(".splat") else ".spz" if "spz" in case else ".ply"
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(make(tmp_path))
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=problem) as info:
            read_splats(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert peak < 8 * 1024 * 1024, f"reading a {path.stat().st_size}-byte bad file allocated {peak:,} bytes"


def test_spz_with_trailing_bytes_after_the_gzip_stream_is_read_with_a_warning(tmp_path):
    path = tmp_path / "trailing.spz"
    path.write_bytes(_written(tmp_path, "spz", 5, version=3) + b"trailing bytes")
    with pytest.warns(FormatWarning, match="unexpected data after the SPZ attributes"):
        assert len(read_splats(path)) == 5


def test_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match="cannot read"):
        read_splats(tmp_path / "nope.ply")


@pytest.mark.parametrize("fmt", ["ply", "compressed_ply", "splat", "spz"])
def test_writers_refuse_nan_and_empty(tmp_path, fmt):
    with pytest.raises(FormatError, match="NaN"):
        write_splats(tmp_path / "x", _with_nan(), fmt=fmt)
    with pytest.raises(FormatError, match="no splats"):
        write_splats(tmp_path / "x", SplatSet.empty(0), fmt=fmt)
    assert list(tmp_path.iterdir()) == []


def test_unknown_output_format_is_named(tmp_path):
    with pytest.raises(FormatError, match="file name does not say"):
        write_splats(tmp_path / "x.obj", random_splats(3))
    with pytest.raises(FormatError, match="unknown splat format 'obj'"):
        write_splats(tmp_path / "x.ply", random_splats(3), fmt="obj")


# ---- fuzz: mutated files through every reader ----------------------------------------------------

REAL_SEEDS = {"ply": "three_points_trailing_byte.ply", "compressed_ply": "tiny_64.compressed.ply"}


def _seed_files(tmp_path_factory) -> dict[str, bytes]:
    """Real files made by other tools (where ../shared/data is here) and files our writers make from a small
    scene of their own (always): SPZ 3 and 4, .splat and an ASCII PLY."""
    folder = tmp_path_factory.mktemp("seeds")
    seeds = {name: (SHARED_DATA / "splats" / file).read_bytes() for name, file in REAL_SEEDS.items()
             if (SHARED_DATA / "splats" / file).is_file()}
    small = random_splats(6, degree=1, seed=7)
    for name, fmt, options in (("spz3", "spz", {"version": 3}), ("spz4", "spz", {"version": 4}),
                               ("splat", "splat", {}), ("ascii", "ply", {})):
        path = folder / f"seed.{name}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_splats(path, small, fmt=fmt, **options)
        seeds[name] = path.read_bytes()
    text = seeds.pop("ascii").split(b"end_header\n")[0].replace(b"binary_little_endian", b"ascii")
    rows = np.asarray(inria_columns(small, normals=True)["x"])  # any column gives the count
    seeds["ascii"] = text + b"end_header\n" + b"\n".join(b"0.5 " * 24 for _ in rows)
    return seeds


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return _seed_files(tmp_path_factory)


MUTATION = st.lists(
    st.tuples(st.sampled_from(["flip", "set", "cut", "insert", "delete"]), st.floats(0, 1), st.integers(0, 255)),
    min_size=1, max_size=4)


@pytest.mark.parametrize("seed", ["ply", "compressed_ply", "spz3", "spz4", "splat", "ascii"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=MUTATION)
def test_mutated_files_load_or_raise_format_error(tmp_path, seeds, seed, mutations):
    if seed not in seeds:
        shared_data("splats", REAL_SEEDS[seed])  # skips, saying which file is absent
    data = bytearray(seeds[seed])
    for kind, where, value in mutations:
        # Headers are where parsers go wrong: aim half the mutations at the first 600 bytes.
        at = int(where * (min(len(data), 600) if value % 2 else len(data)))
        at = min(at, max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[at] ^= 1 << (value % 8)
        elif kind == "set" and data:
            data[at] = value
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = bytes([value]) * (1 + value % 7)
        elif data:
            del data[at:at + 1 + value % 16]
    path = tmp_path / f"fuzz-{seed}.bin"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            splats = read_splats(path)
        except FormatError as exc:
            assert str(path) in str(exc)
            return
    assert len(splats) > 0 and not splats.nonfinite()


def test_unwritable_destination_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match="cannot write"):
        write_splats(tmp_path / "missing-folder" / "x.ply", random_splats(3))


def test_extra_named_like_a_core_property_is_refused(tmp_path):
    splats = random_splats(3)
    splats.extras["opacity"] = np.zeros(3, np.float32)
    with pytest.raises(FormatError, match="extra property 'opacity'"):
        write_splats(tmp_path / "x.ply", splats)


# ---- COLMAP image names cannot address files outside the images folder ------------------------

@pytest.mark.parametrize("name, problem", [
    ("../secret.jpg", r"'\.\.'"), ("sub/../../secret.jpg", r"'\.\.'"), ("..\\secret.jpg", r"'\.\.'"),
    ("/etc/passwd", "absolute"), ("\\\\server\\share\\x.jpg", "absolute"), ("C:\\x.jpg", "absolute"),
    ("a\0b.jpg", "NUL"), ("", "empty"), (".", "outside"),
])
def test_image_names_outside_the_images_folder_are_refused(tmp_path, name, problem):
    from bridge.formats.colmap import resolve_image_path

    model = tmp_path / "sparse" / "0" / "images.bin"
    with pytest.raises(FormatError, match=problem) as info:
        resolve_image_path(tmp_path / "images", name, model=model)
    assert str(model) in str(info.value) and repr(name) in str(info.value)
    with pytest.raises(FormatError, match=str(tmp_path / "images")):
        resolve_image_path(tmp_path / "images", name)


def test_image_names_inside_the_images_folder_resolve(tmp_path):
    from bridge.formats.colmap import resolve_image_path

    images = tmp_path / "images"
    assert resolve_image_path(images, "a.jpg") == str(images / "a.jpg")
    assert resolve_image_path(str(images), "cam1/./0001.jpg") == str(images / "cam1" / "0001.jpg")
    assert resolve_image_path(images, "b..jpg") == str(images / "b..jpg")


def _colmap_model(folder, binary: bool, params=(70.0, 77.0, 29.3, 26.1), name: str = "view_0.png"):
    from bridge.formats.cameras import Camera, Reconstruction, View
    from bridge.formats.colmap import write_model

    rec = Reconstruction({1: Camera(1, "PINHOLE", 64, 48, np.array(params))},
                         [View(1, name, 1, np.eye(3), np.array([0.0, 0.0, 3.0]))],
                         np.zeros((1, 3)), np.zeros((1, 3), np.uint8), np.ones(1), np.zeros(1, int))
    write_model(rec, folder, binary=binary)
    return folder


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
@pytest.mark.parametrize("params, problem", [
    ((0.0, 77.0, 29.3, 26.1), "focal length fx = 0"), ((70.0, -5.0, 29.3, 26.1), "focal length fy = -5"),
    ((1e300, 77.0, 29.3, 26.1), "focal length fx = 1e\\+300"), ((70.0, 77.0, 1e300, 26.1), "principal point cx"),
])
def test_colmap_cameras_with_impossible_intrinsics_are_refused(tmp_path, binary, params, problem):
    from bridge.formats.colmap import read_model

    folder = _colmap_model(tmp_path / "model", binary, params)
    with pytest.raises(FormatError, match=f"camera 1 has {problem}") as info:
        read_model(folder)
    assert str(folder / ("cameras.bin" if binary else "cameras.txt")) in str(info.value)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
@pytest.mark.parametrize("name, problem", [("../../etc/passwd", r"'\.\.'"), ("/etc/passwd", "absolute"),
                                           ("sub/../../x.png", r"'\.\.'")])
def test_colmap_image_names_outside_the_images_folder_are_refused(tmp_path, binary, name, problem):
    from bridge.formats.colmap import read_model

    folder = _colmap_model(tmp_path / "model", binary, name=name)
    with pytest.raises(FormatError, match=problem) as info:
        read_model(folder)
    assert str(folder / ("images.bin" if binary else "images.txt")) in str(info.value) and name in str(info.value)


def _point_lines(text: bytes, edit) -> bytes:
    """points3D.txt with ``edit`` applied to its first point line."""
    lines = text.split(b"\n")
    first = next(i for i, line in enumerate(lines) if line and not line.startswith(b"#"))
    lines[first] = edit(lines[first])
    return b"\n".join(lines)


def _column(line: bytes, index: int, value: bytes) -> bytes:
    parts = line.split()
    parts[index] = value
    return b" ".join(parts)


# What pycolmap reads leniently and our own points parser refused with a traceback (found by fuzzing).
LENIENT_POINTS = {
    "non-utf8 comment": lambda text: text.replace(b"# 3D point list", b"# 3D \xff\xfe point list"),
    "non-utf8 value": lambda text: _point_lines(text, lambda line: line + b"\xc0"),
    "trailing characters": lambda text: _point_lines(text, lambda line: line[:-3] + b"(47"),
    "seven values": lambda text: _point_lines(text, lambda line: b" ".join(line.split()[:1] + line.split()[2:])),
    "id beyond 63 bits": lambda text: _point_lines(text, lambda line: b"18446744073709551615" + line[1:]),
    "colour 300": lambda text: _point_lines(text, lambda line: _column(line, 4, b"300")),
}


@pytest.mark.parametrize("case", LENIENT_POINTS)
def test_colmap_text_points_that_pycolmap_tolerates_are_read_or_refused(tmp_path, case):
    from bridge.formats.colmap import read_model

    folder = _colmap_model(tmp_path / "model", binary=False)
    points = folder / "points3D.txt"
    points.write_bytes(LENIENT_POINTS[case](points.read_bytes()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            rec = read_model(folder)
        except FormatError as exc:
            assert str(folder) in str(exc)
        else:  # only a comment was damaged
            assert case == "non-utf8 comment" and len(rec.points) == 1
