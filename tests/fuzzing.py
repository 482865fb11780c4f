"""Mutation fuzzing of every reader in ``bridge.formats``, bounded in time and memory per input.

Used by ``tests/test_fuzz.py`` (a short run) and ``benchmarks/bench_fuzz.py`` (a long one). Imports
neither bpy nor torch, nor conftest.

Seeds are small files made by our own writers (every splat format and SPZ version, ASCII PLY, glTF, COLMAP
binary and text models) plus the real splat files in ``../shared/data/splats`` when that folder is
there. Input ``i`` of a seed is a pure function of the seed's bytes and ``(seed name, i)``
(:func:`mutate`), so any finding is reproduced from those two values alone.

Inputs run in worker subprocesses (``python tests/fuzzing.py SEED_DIR``), many per worker: each
worker caps its address space with ``RLIMIT_AS`` and measures every read's peak Python-heap memory
with :mod:`tracemalloc` (numpy's buffers included); the parent gives each input a wall-clock limit
and replaces a worker that hangs or dies. Outcomes:

- ``ok``: read (with or without a FormatWarning);
- ``format_error``: FormatError naming the file;
- ``bug``: any other exception, a FormatError that does not name the file, or another warning;
- ``hang``: over the time limit; ``oom``: MemoryError under the address-space cap;
  ``crash``: the worker died (pycolmap aborts the process on some corrupt models).
"""
from __future__ import annotations

import gzip
import json
import os
import random
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_SPLATS = ROOT.parent / "shared" / "data" / "splats"
OUTCOMES = ("ok", "format_error", "bug", "hang", "oom", "crash")
FAILURES = ("bug", "hang", "oom", "crash")
# Fixed memory a read may use whatever the input's size (zlib's window, lookup tables, small arrays):
# the memory ratio is peak / (size + this), so a 47-byte file is not judged by its constant costs.
MEMORY_FLOOR = 64 * 1024
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
STARTUP_SECONDS = 120


@dataclass
class Seed:
    name: str   # unique, e.g. "spz_v3" or "real:biker.spz"
    label: str  # the reader it exercises, for the figures: "ply", "spz_v3", "colmap_text", ...
    files: dict[str, bytes]  # one file for splats; cameras/images/points3D for a COLMAP model

    @property
    def colmap(self) -> bool:
        return self.label.startswith("colmap")


# ---------------------------------------------------------------------------------------------
# Seeds


def build_seeds(shared: Path | None = SHARED_SPLATS) -> list[Seed]:
    """Our writers' output for every format (deterministic), plus the real splat files in ``shared``."""
    import numpy as np

    from bridge.formats import SplatSet, write_splats
    from bridge.formats import spz as spz_format
    from bridge.formats.cameras import Camera, Reconstruction, View
    from bridge.formats.colmap import write_model

    rng = np.random.default_rng(7)
    f = np.float32

    def splats(n: int, degree: int) -> SplatSet:
        return SplatSet(means=rng.uniform(-3, 3, (n, 3)).astype(f), scales=rng.uniform(-5, 0, (n, 3)).astype(f),
                        quats=rng.normal(size=(n, 4)).astype(f), opacities=rng.uniform(-3, 3, n).astype(f),
                        sh_dc=rng.uniform(-1, 1, (n, 3)).astype(f),
                        sh_rest=rng.uniform(-0.4, 0.4, (n, {0: 0, 1: 3, 2: 8, 3: 15}[degree], 3)).astype(f))

    seeds = []
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, fmt, n, degree, options in (
            ("ply", "ply", 4, 1, {}), ("ply", "ply", 3, 0, {}), ("compressed_ply", "compressed_ply", 5, 1, {}),
            ("compressed_ply", "compressed_ply", 3, 0, {}), ("splat", "splat", 4, 0, {}),
            ("spz_v2", "spz", 4, 1, {"version": 2}), ("spz_v3", "spz", 4, 1, {"version": 3}),
            ("spz_v3", "spz", 3, 0, {"version": 3}), ("spz_v4", "spz", 4, 1, {"version": 4}),
            ("spz_v4", "spz", 3, 0, {"version": 4}),
        ):
            path = Path(folder) / f"seed.{fmt}"
            write_splats(path, splats(n, degree), fmt=fmt, **options)
            seeds.append(Seed(f"{label}_{n}x{degree}", label, {path.name: path.read_bytes()}))
        seeds.append(Seed("ply_ascii_3x1", "ply_ascii", {"seed.ply": _ascii_ply(seeds[0].files["seed.ply"])}))
        compressed = seeds[2].files["seed.compressed_ply"]
        seeds.append(Seed("compressed_ply_ascii_5x1", "compressed_ply", {"seed.ply": _ascii_ply(compressed)}))
        seeds.append(Seed("spz_v1_3x1", "spz_v1", {"seed.spz": _spz_v1(spz_format, splats(3, 1))}))

        cameras = {1: Camera(1, "PINHOLE", 64, 48, np.array([70.0, 77.0, 29.3, 26.1])),
                   2: Camera(2, "OPENCV", 40, 60, np.array([55.0, 53.0, 21.0, 28.5, 0.01, -0.002, 0.0005, 0.0003])),
                   3: Camera(3, "SIMPLE_RADIAL", 50, 50, np.array([60.0, 25.0, 25.0, -0.1]))}
        views = [View(i + 1, f"view_{i}.png", 1 + i % 3, np.eye(3), np.array([0.0, 0.0, 3.0 + i])) for i in range(3)]
        points = rng.uniform(-1, 1, (4, 3))
        rec = Reconstruction(cameras, views, points, rng.integers(0, 256, (4, 3), dtype=np.uint8),
                             rng.uniform(0.1, 2, 4), np.zeros(4, int))
        for binary, label in ((True, "colmap_binary"), (False, "colmap_text")):
            model = Path(folder) / label
            write_model(rec, model, binary=binary)
            files = {p.name: p.read_bytes() for p in sorted(model.iterdir()) if p.stem in
                     ("cameras", "images", "points3D")}
            seeds.append(Seed(label, label, files))
        tracks = _colmap_with_tracks(Path(folder) / "tracks")
        for ext, label in ((".bin", "colmap_binary"), (".txt", "colmap_text")):
            files = {p.name: p.read_bytes() for p in sorted(tracks.iterdir()) if p.suffix == ext}
            seeds.append(Seed(f"{label}_tracks", label, files))
    seeds += gltf_seeds(splats)
    if shared is not None and shared.is_dir():
        for path in sorted(shared.iterdir()):
            if path.suffix in (".ply", ".spz", ".splat"):
                data = path.read_bytes()
                label = ("compressed_ply" if path.name.endswith(".compressed.ply") else "ply" if path.suffix == ".ply"
                         else f"spz_v{data[4]}" if data.startswith(b"NGSP") else "spz_v3")
                seeds.append(Seed(f"real:{path.name}", label, {path.name: data}))
    return seeds


def _colmap_with_tracks(folder: Path) -> Path:
    """A model with 2D points, tracks, rigs and frames (COLMAP 3.12's files), both binary and text.

    ``write_model`` writes neither 2D points nor tracks, so this one is made with pycolmap itself.
    """
    import numpy as np
    import pycolmap

    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(pycolmap.Camera(camera_id=1, model="PINHOLE", width=64, height=48,
                                                    params=[70.0, 77.0, 32.0, 24.0]))
    for i in (1, 2):
        points = pycolmap.Point2DList([pycolmap.Point2D(np.array([10.0 * k, 5.0])) for k in range(1, 4)])
        image = pycolmap.Image(name=f"view_{i}.png", camera_id=1, image_id=i, points2D=points)
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(np.eye(3)), np.array([0.0, 0.0, 3.0 + i]))
        rec.add_image_with_trivial_frame(image, pose)
    for k in range(3):
        track = pycolmap.Track()
        track.add_element(1, k)
        track.add_element(2, k)
        rec.add_point3D(np.array([0.1 * k, 0.0, 0.0]), track, np.array([10, 20, 30], np.uint8))
    folder.mkdir()
    rec.write_binary(str(folder))
    rec.write_text(str(folder))
    return folder


def _ascii_ply(binary: bytes) -> bytes:
    """The same elements as ASCII PLY (our writers only write binary little endian)."""
    head, elements = _ply_parts(binary)
    rows = [" ".join(repr(v.item()) for v in row) for _, array in elements for row in array]
    return head.replace(b"binary_little_endian", b"ascii") + "\n".join(rows).encode() + b"\n"


def _ply_parts(data: bytes):
    """(header bytes, [(element, structured array)]) of a consistent binary little-endian PLY, else None."""
    import numpy as np

    from bridge.formats.errors import FormatError
    from bridge.formats.ply_elements import read_header

    try:
        header = read_header(None, data)
    except FormatError:
        return None
    if header.byte_order != "<":
        return None
    parts, offset = [], header.data_offset
    for element in header.elements:
        dtype = element.dtype("<")
        if offset + element.count * dtype.itemsize > len(data):
            return None
        parts.append((element, np.frombuffer(data, dtype, element.count, offset)))
        offset += element.count * dtype.itemsize
    return data[:header.data_offset], parts


def _spz_v1(spz, splats) -> bytes:
    """SPZ version 1 (float16 positions, 3-byte rotations), which no writer of ours makes."""
    blocks = spz.encode(spz.flip_yz(splats), 2, 12)
    blocks[0] = spz.flip_yz(splats).means.astype("<f2").tobytes()
    header = spz.LEGACY_HEADER.pack(b"NGSP", 1, len(splats), splats.sh_degree, 12, 0, 0)
    return gzip.compress(header + b"".join(blocks), mtime=0)


def save_seeds(seeds: list[Seed], folder: Path) -> None:
    for seed in seeds:
        for name, data in seed.files.items():
            path = folder / seed.name.replace(":", "_") / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    (folder / "seeds.json").write_text(json.dumps([[s.name, s.label, sorted(s.files)] for s in seeds]))


def load_seeds(folder: Path) -> dict[str, Seed]:
    seeds = {}
    for name, label, files in json.loads((folder / "seeds.json").read_text()):
        base = folder / name.replace(":", "_")
        seeds[name] = Seed(name, label, {f: (base / f).read_bytes() for f in files})
    return seeds


# ---------------------------------------------------------------------------------------------
# Mutations

TEXT_NUMBERS = ["0", "1", "-1", "2", "3", "255", "256", "65535", "2147483648", "4294967295", "4294967296",
                "18446744073709551615", "18446744073709551616", "9" * 40, "1e300", "-1e300", "1e-300", "nan",
                "inf", "-inf", "0.0", "-0", "1.5", "", "x"]
BINARY_INTS = [0, 1, 2, 3, 4, 5, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
               1 << 32, 1 << 63, (1 << 64) - 1]
BINARY_FLOATS = {"<f": [0.0, -0.0, -1.0, 1e-45, 3e38, float("nan"), float("inf"), float("-inf"), 65504.0],
                 "<d": [0.0, -0.0, -1.0, 1e-300, 1e300, float("nan"), float("inf"), float("-inf")]}
PLY_WORDS = [b"float", b"double", b"uchar", b"char", b"int", b"uint", b"short", b"ushort", b"int8", b"float64",
             b"list", b"quad", b"vertex", b"chunk", b"sh", b"face", b"ascii", b"binary_big_endian",
             b"binary_little_endian", b"element", b"property", b"f_rest_0", b"packed_position", b"x"]


def mutate(seed: Seed, index: int) -> dict[str, bytes]:
    """Input ``index`` of ``seed``: its files with one of them changed by 1-4 mutations."""
    rng = random.Random(f"{seed.name}:{index}")
    files = dict(seed.files)
    name = rng.choice(sorted(files))
    data = files[name]
    if seed.label in GLTF_LABELS and rng.random() < 0.7:
        files[name] = mutate_gltf(rng, data)
        return files
    gzipped = data.startswith(b"\x1f\x8b")
    if gzipped and rng.random() < 0.6:
        # Mutating the compressed bytes mostly breaks the CRC: reach the SPZ parser behind it too.
        inner = _mutations(rng, gzip.decompress(data), rng.randint(1, 3))
        data = gzip.compress(inner, mtime=0)
        if rng.random() < 0.3:
            data += rng.randbytes(rng.randint(1, 64))
    else:
        data = _mutations(rng, data, rng.randint(1, 4))
    files[name] = data
    return files


def _mutations(rng: random.Random, data: bytes, count: int) -> bytes:
    out = bytearray(data)
    for _ in range(count):
        _mutate_once(rng, out)
    return bytes(out)


def _position(rng: random.Random, data: bytearray, header: int = 512) -> int:
    """Half the time in the first ``header`` bytes, where formats keep their counts and types."""
    span = min(len(data), header) if rng.random() < 0.5 else len(data)
    return rng.randrange(span) if span else 0


def _mutate_once(rng: random.Random, data: bytearray) -> None:
    kind = rng.choice(["flip", "byte", "truncate", "insert", "delete", "duplicate", "number", "number",
                       "word", "line", "trailing", "ply", "ply"])
    at = _position(rng, data)
    if kind == "flip" and data:
        data[at] ^= 1 << rng.randrange(8)
    elif kind == "byte" and data:
        data[at] = rng.choice([0, 0xFF, 0x7F, 0x80, 0x0A, 0x20, rng.randrange(256)])
    elif kind == "truncate":
        del data[at:]
    elif kind == "insert":
        run = bytes([rng.randrange(256)]) * rng.randint(1, 64)
        data[at:at] = rng.randbytes(rng.randint(1, 16)) if rng.random() < 0.5 else run
    elif kind == "delete":
        del data[at:at + rng.randint(1, 64)]
    elif kind == "duplicate" and data:
        chunk = bytes(data[at:at + rng.choice([4, 8, 16, 32, 51, 64, 256, 1024])])
        where = _position(rng, data)
        data[where:where] = chunk * rng.randint(1, 3)
    elif kind == "ply" and data.startswith(b"ply"):
        _edit_ply(rng, data)
    elif kind == "number":
        _edit_number(rng, data, at)
    elif kind == "word":
        _edit_word(rng, data)
    elif kind == "line":
        _edit_line(rng, data)
    elif kind == "trailing":
        data += rng.randbytes(rng.randint(1, 64)) if rng.random() < 0.7 else bytes(data[:rng.randint(1, 256)])


_TOKEN = re.compile(rb"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _text_part(data: bytearray) -> int:
    """How many leading bytes are text: a PLY header, or all of a text COLMAP file."""
    end = data.find(b"end_header")
    if end >= 0:
        return end
    return len(data) if data[:4096].isascii() and b"\n" in data[:4096] else 0


def _edit_number(rng: random.Random, data: bytearray, at: int) -> None:
    """A count, size or value replaced by an interesting one: as text in headers and text files, else binary."""
    text = _text_part(data)
    tokens = list(_TOKEN.finditer(data, 0, text)) if text else []
    if tokens:
        token = rng.choice(tokens)
        old = int(float(token.group())) if b"." not in token.group() and b"e" not in token.group() else 1
        new = rng.choice(TEXT_NUMBERS + [str(old + 1), str(old - 1), str(old * 2), str(old * 1000)])
        data[token.start():token.end()] = new.encode()
        return
    at = rng.randrange(min(len(data), 64)) if data and rng.random() < 0.5 else at
    if rng.random() < 0.7:
        width = rng.choice([1, 2, 4, 8])
        value = rng.choice(BINARY_INTS + [rng.getrandbits(8 * width)]) % (1 << (8 * width))
        data[at:at + width] = value.to_bytes(width, "little")
    else:
        import struct

        fmt = rng.choice(sorted(BINARY_FLOATS))
        data[at:at + struct.calcsize(fmt)] = struct.pack(fmt, rng.choice(BINARY_FLOATS[fmt]))


PLY_TYPE_NAMES = [b"char", b"uchar", b"short", b"ushort", b"int", b"uint", b"float", b"double"]
PLY_COUNTS = [0, 1, 2, 255, 256, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 64) - 1, 10 ** 12, 10 ** 30]


def _edit_ply(rng: random.Random, data: bytearray) -> None:
    """A PLY header edit aimed at the element lines: a count, an element's name, a property's type.

    A type change re-encodes that property's values (when the body matches the header), so the
    file stays consistent and the reader gets past its size checks with a type it did not expect.
    """
    end = data.find(b"end_header")
    if end < 0:
        return
    lines = bytes(data[:end]).split(b"\n")
    elements = [i for i, line in enumerate(lines) if line.startswith(b"element ") and len(line.split()) == 3]
    properties = [i for i, line in enumerate(lines) if line.startswith(b"property ") and len(line.split()) == 3]
    action = rng.choice(["count", "rename", "retype", "retype"])
    if action == "retype" and properties:
        i = rng.choice(properties)
        words = lines[i].split()
        words[1] = rng.choice(PLY_TYPE_NAMES)
        relaid = _retyped(bytes(data), i, words)
        if relaid is not None:
            data[:] = relaid
            return
        lines[i] = b" ".join(words)
    elif action in ("count", "rename") and elements:
        i = rng.choice(elements)
        words = lines[i].split()
        if action == "count":
            old = int(words[2]) if words[2].isdigit() else 1
            words[2] = str(rng.choice(PLY_COUNTS + [old + 1, old - 1 if old else 0, old * 2, old // 2])).encode()
        else:
            names = [lines[j].split()[1] for j in elements]
            words[1] = rng.choice(names + [b"vertex", b"chunk", b"sh", b"face"])
        lines[i] = b" ".join(words)
    data[:end] = b"\n".join(lines)


def _retyped(data: bytes, line: int, words: list[bytes]) -> bytes | None:
    """``data`` with header line ``line`` (a property) set to ``words`` and its values re-encoded."""
    import numpy as np

    parts = _ply_parts(data)
    if parts is None:
        return None
    head, elements = parts
    lines = head.split(b"\n")
    lines[line] = b" ".join(words)
    owner = max((k for k, text in enumerate(lines[:line]) if text.startswith(b"element ")), default=None)
    name = lines[owner].split()[1].decode() if owner is not None else None
    body, rest = [], len(head) + sum(array.nbytes for _, array in elements)
    for element, array in elements:
        if element.name == name:
            prop = words[2].decode()
            kind = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
                    "float": "f4", "double": "f8"}[words[1].decode()]
            dtype = np.dtype([(n, "<" + (kind if n == prop else t)) for n, t in element.properties])
            new = np.empty(len(array), dtype)
            with np.errstate(all="ignore"):
                for n in dtype.names:
                    new[n] = array[n].astype(dtype[n], casting="unsafe")
            array = new
        body.append(array.tobytes())
    return b"\n".join(lines) + b"".join(body) + data[rest:]


def _edit_word(rng: random.Random, data: bytearray) -> None:
    """A type, element name or keyword of a PLY header replaced by another one."""
    text = _text_part(data)
    words = [m for m in re.finditer(rb"[a-z_][a-z_0-9]*", data[:text])] if text else []
    if words:
        word = rng.choice(words)
        data[word.start():word.end()] = rng.choice(PLY_WORDS)


def _edit_line(rng: random.Random, data: bytearray) -> None:
    """A header (or text file) line duplicated, deleted or moved: duplicate elements, properties, images."""
    text = _text_part(data)
    starts = [0] + [m.end() for m in re.finditer(rb"\n", data[:text])]
    if len(starts) < 2:
        return
    i = rng.randrange(len(starts) - 1)
    line = bytes(data[starts[i]:starts[i + 1]])
    action = rng.choice(["duplicate", "delete", "move"])
    if action != "duplicate":
        del data[starts[i]:starts[i + 1]]
    if action != "delete":
        where = rng.choice(starts[:-1]) if action == "duplicate" else starts[rng.randrange(len(starts) - 1)]
        where = min(where, len(data))
        data[where:where] = line


# ---------------------------------------------------------------------------------------------
# The worker: reads inputs, one per line of stdin ("SEED INDEX"), answers one JSON line each


# ---------------------------------------------------------------------------------------------
# glTF (KHR_gaussian_splatting): seeds and structure-aware mutations of the JSON, re-packed so the
# container stays valid and the mutation reaches the accessors, buffer views, nodes and extension

GLTF_LABELS = ("glb", "gltf_json")
GLTF_NUMBERS = [0, 1, -1, 2, 3, 4, 5, 7, 12, 16, 255, 256, 5120, 5121, 5122, 5123, 5125, 5126, 65535, 2 ** 31,
                2 ** 32, 2 ** 53, 10 ** 12, 1e308, -1e308, 0.5, -0.0, True, None, "", "VEC3", "VEC4", "SCALAR",
                "ellipse", "lin_rec709_display", [], {}]


def gltf_seeds(splats) -> list[Seed]:
    """Our writer's .glb and .gltf, and a hand-made .glb of every other accessor form (quantised
    types, an interleaved view, a sparse accessor, indices, a node hierarchy)."""
    import numpy as np

    from bridge.formats import gltf

    seeds = []
    with tempfile.TemporaryDirectory() as folder:
        for name, n, degree in (("seed.glb", 4, 1), ("seed.gltf", 3, 2)):
            path = Path(folder) / name
            gltf.write(path, splats(n, degree))
            label = "glb" if name.endswith(".glb") else "gltf_json"
            seeds.append(Seed(f"{label}_{n}x{degree}", label, {name: path.read_bytes()}))
    doc, arrays = gltf.document(splats(5, 1))
    body = bytearray(b"".join(a.tobytes() + b"\0" * (-a.nbytes % 4) for a in arrays))

    def add(blob: bytes) -> int:  # a new buffer view holding ``blob``
        doc["bufferViews"].append({"buffer": 0, "byteOffset": len(body), "byteLength": len(blob)})
        body.extend(blob + b"\0" * (-len(blob) % 4))
        return len(doc["bufferViews"]) - 1

    attributes = doc["meshes"][0]["primitives"][0]["attributes"]
    rotation = doc["accessors"][attributes[gltf.ROTATION]]
    quats = arrays[attributes[gltf.ROTATION]]
    rotation.update(bufferView=add(np.rint(quats * 32767).astype("<i2").tobytes()), componentType=5122,
                    normalized=True)
    doc["accessors"].append({"bufferView": add(np.array([4, 0, 2], "<u2").tobytes()), "componentType": 5123,
                             "count": 3, "type": "SCALAR"})
    doc["meshes"][0]["primitives"][0]["indices"] = len(doc["accessors"]) - 1
    doc["accessors"][attributes[gltf.sh_semantic(1, 1)]]["sparse"] = {
        "count": 2, "indices": {"bufferView": add(np.array([1, 3], "<u1").tobytes()), "componentType": 5121},
        "values": {"bufferView": add(np.full((2, 3), 0.25, np.float32).tobytes())}}
    doc["nodes"] = [{"children": [1], "rotation": [0, 0.6, 0, 0.8]}, {"mesh": 0, "scale": [2, 2, 2]}]
    doc["buffers"] = [{"byteLength": len(body)}]
    seeds.append(Seed("glb_quantised_sparse_indexed", "glb", {"seed.glb": _pack_glb(doc, bytes(body))}))
    return seeds


def _pack_glb(doc: dict, body: bytes) -> bytes:
    import struct

    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    body += b"\0" * (-len(body) % 4)
    head = struct.pack("<4sII", b"glTF", 2, 28 + len(text) + len(body))
    return head + struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(body), 0x004E4942) + body


def _unpack_gltf(data: bytes) -> tuple[dict, bytes | None] | None:
    import struct

    try:
        if data.startswith(b"glTF"):
            (length,) = struct.unpack_from("<I", data, 12)
            doc = json.loads(data[20:20 + length])
            return doc, data[20 + length + 8:]
        return json.loads(data), None
    except (ValueError, struct.error, UnicodeDecodeError, RecursionError):
        return None


def _slots(doc) -> list[tuple]:
    """Every (container, key or index) of the JSON, depth first (iteratively: mutations may nest deep)."""
    slots, stack = [], [doc]
    while stack:
        node = stack.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else ()
        for key in keys:
            slots.append((node, key))
            stack.append(node[key])
    return slots


def mutate_gltf(rng: random.Random, data: bytes) -> bytes:
    """One to three edits of the JSON (a value replaced, a key dropped, a list entry repeated, an
    attribute pointed elsewhere), the container re-packed with correct lengths."""
    unpacked = _unpack_gltf(data)
    if unpacked is None:
        return _mutations(rng, data, 1)
    doc, body = unpacked
    for _ in range(rng.randint(1, 3)):
        slots = _slots(doc)
        if not slots:
            break
        parent, key = rng.choice(slots)
        action = rng.random()
        if action < 0.55:
            parent[key] = rng.choice(GLTF_NUMBERS)
        elif action < 0.7:
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif action < 0.85 and isinstance(parent, list):
            parent.extend([parent[key]] * rng.choice([1, 2, 100, 5000]))
        elif isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = parent[key] + rng.choice([-4, -1, 1, 4, 12, 1 << 20])
        else:
            parent[key] = rng.choice(GLTF_NUMBERS)
    if body is None:
        return json.dumps(doc).encode()
    return _pack_glb(doc, body)


def _worker(seed_dir: Path, memory_limit: int) -> None:
    import resource
    import tracemalloc

    from bridge.formats import FormatError, FormatWarning, read_splats
    from bridge.formats.colmap import read_model

    seeds = load_seeds(seed_dir)
    work = Path(tempfile.mkdtemp(prefix="fuzz-worker-"))
    # Cap the address space at what is mapped now plus the allowance: an allocation beyond it
    # raises MemoryError here instead of swapping the shared machine.
    with open("/proc/self/statm") as fh:
        mapped = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (mapped + memory_limit, resource.RLIM_INFINITY))
    for seed in seeds.values():  # first calls allocate once (lazy imports, caches): not an input's cost
        _read_one(_place(work, seed, seed.files), seed.colmap, read_splats, read_model, FormatError, FormatWarning)
    tracemalloc.start()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            name, index = line.split()
            seed = seeds[name]
            files = mutate(seed, int(index))
            target = _place(work, seed, files)
            size = sum(len(d) for d in files.values())
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            start = time.perf_counter()
            outcome, detail = _read_one(target, seed.colmap, read_splats, read_model, FormatError, FormatWarning)
            seconds = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1] - base
            print(json.dumps({"outcome": outcome, "detail": detail, "size": size, "peak": peak,
                              "seconds": seconds}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _place(work: Path, seed: Seed, files: dict[str, bytes]) -> Path:
    if seed.colmap:
        folder = work / "model"
        shutil.rmtree(folder, ignore_errors=True)  # no file of the previous model may stay
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return folder
    (name, data), = files.items()
    path = work / name
    path.write_bytes(data)
    return path


def _read_one(target: Path, colmap: bool, read_splats, read_model, format_error, format_warning):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            (read_model if colmap else read_splats)(target)
        except format_error as exc:
            if str(target) not in str(exc):
                return "bug", f"FormatError without the file's name: {exc}"
            return "format_error", str(exc).replace(str(target), "<file>")[:300]
        except MemoryError:
            return "oom", "MemoryError"
        except Exception as exc:  # noqa: BLE001 - anything else is what the fuzzer looks for
            return "bug", _where(exc)
    other = [w for w in caught if not issubclass(w.category, format_warning)]
    if other:
        return "bug", f"{other[0].category.__name__}: {other[0].message} ({other[0].filename}:{other[0].lineno})"
    return "ok", ""


def _where(exc: BaseException) -> str:
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "bridge" in f.filename] or frames
    last = ours[-1] if ours else None
    place = f" at {Path(last.filename).name}:{last.lineno}" if last else ""
    return f"{type(exc).__name__}: {str(exc)[:200]}{place}"


# ---------------------------------------------------------------------------------------------
# The parent: feeds inputs to workers, enforces the time limit, collects the figures


@dataclass
class Report:
    outcomes: dict[str, Counter] = field(default_factory=dict)  # label -> outcome -> count
    failures: list[dict] = field(default_factory=list)  # seed, index, outcome, detail
    max_ratio: float = 0.0  # peak memory / (input size + MEMORY_FLOOR)
    max_ratio_input: tuple = ()
    ratio_by_label: dict[str, float] = field(default_factory=dict)
    slowest: float = 0.0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.outcomes.values())

    def count(self, outcome: str) -> int:
        return sum(c[outcome] for c in self.outcomes.values())

    def table(self) -> str:
        lines = ["| reader | inputs | " + " | ".join(OUTCOMES) + " | max memory / (size + 64 KiB) |",
                 "| --- | ---: | " + " | ".join("---:" for _ in OUTCOMES) + " | ---: |"]
        for label in sorted(self.outcomes):
            counts = self.outcomes[label]
            lines.append(f"| {label} | {sum(counts.values()):,} | "
                         + " | ".join(f"{counts[o]:,}" for o in OUTCOMES) + f" | {self.ratio_by_label[label]:.1f} |")
        lines.append(f"| **all** | **{self.total:,}** | " + " | ".join(f"**{self.count(o):,}**" for o in OUTCOMES)
                     + f" | **{self.max_ratio:.1f}** |")
        return "\n".join(lines)


def plan(seeds: list[Seed], total: int, start: int = 0) -> list[tuple[str, int]]:
    """``total`` inputs spread over the seeds: equal shares per reader label, then per seed."""
    by_label: dict[str, list[Seed]] = {}
    for seed in seeds:
        by_label.setdefault(seed.label, []).append(seed)
    inputs = []
    per_label = total // len(by_label)
    for group in by_label.values():
        for k, seed in enumerate(group):
            share = per_label // len(group) + (1 if k < per_label % len(group) else 0)
            inputs += [(seed.name, start + i) for i in range(share)]
    random.Random(0).shuffle(inputs)  # mix slow and fast seeds across workers
    return inputs


def run(seeds: list[Seed], inputs: list[tuple[str, int]], workers: int = 2, timeout: float = 10.0,
        memory_limit: int = 1 << 30, progress=None) -> Report:
    """Run ``inputs`` ((seed name, index) pairs) in ``workers`` worker processes; see the module docstring."""
    labels = {seed.name: seed.label for seed in seeds}
    report = Report()
    lock = threading.Lock()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz-seeds-") as folder:
        save_seeds(seeds, Path(folder))

        def record(name: str, index: int, result: dict) -> None:
            label = labels[name]
            with lock:
                report.outcomes.setdefault(label, Counter())[result["outcome"]] += 1
                if result["outcome"] in FAILURES:
                    report.failures.append({"seed": name, "index": index, **result})
                ratio = result.get("peak", 0) / (result.get("size", 0) + MEMORY_FLOOR)
                report.ratio_by_label[label] = max(report.ratio_by_label.get(label, 0.0), ratio)
                if ratio > report.max_ratio:
                    report.max_ratio, report.max_ratio_input = ratio, (name, index, result.get("size"))
                report.slowest = max(report.slowest, result.get("seconds", 0.0))
                if progress is not None:
                    progress(report)

        shards = [inputs[k::workers] for k in range(workers)]
        threads = [threading.Thread(target=_drive, args=(Path(folder), shard, timeout, memory_limit, record))
                   for shard in shards]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    report.seconds = time.perf_counter() - started
    return report


def _start_worker(seed_dir: Path, memory_limit: int) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # stderr goes to a file, read back when the worker dies (a pipe nobody drains could block it).
    log = tempfile.TemporaryFile(mode="w+")
    worker = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(seed_dir), str(memory_limit)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                              text=True, bufsize=1, cwd=ROOT, env=env)
    worker.log = log
    return worker


def _drive(seed_dir: Path, shard: list[tuple[str, int]], timeout: float, memory_limit: int, record) -> None:
    worker = None
    try:
        for name, index in shard:
            if worker is None:
                worker = _start_worker(seed_dir, memory_limit)
                # Imports take seconds on a busy machine: they get their own, longer limit.
                ready, _, _ = select.select([worker.stdout], [], [], STARTUP_SECONDS)
                if not ready or worker.stdout.readline() != "ready\n":
                    raise RuntimeError(f"a fuzz worker did not start within {STARTUP_SECONDS} s")
            worker.stdin.write(f"{name} {index}\n")
            worker.stdin.flush()
            ready, _, _ = select.select([worker.stdout], [], [], timeout)
            line = worker.stdout.readline() if ready else None
            if line:
                record(name, index, json.loads(line))
                continue
            if line is None:
                result = {"outcome": "hang", "detail": f"no answer within {timeout:g} s"}
            else:
                worker.wait()
                worker.log.seek(0)
                tail = worker.log.read()[-600:].strip().replace("\n", " | ")
                result = {"outcome": "crash", "detail": f"the worker exited with {worker.returncode}: {tail}"}
            _stop(worker)
            worker = None
            record(name, index, result)
    finally:
        if worker is not None:
            _stop(worker)


def _stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.kill()
    worker.wait()
    for stream in (worker.stdin, worker.stdout, worker.log):
        try:
            stream.close()
        except OSError:
            pass


def reproduce(seeds: list[Seed], name: str, index: int, folder: Path) -> Path:
    """Write input ``index`` of seed ``name`` to ``folder`` (a file, or a model folder), for a bug report."""
    seed = next(s for s in seeds if s.name == name)
    return _place(Path(folder), seed, mutate(seed, index))


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), int(sys.argv[2]))
