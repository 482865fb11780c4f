"""Which splat format a file holds, decided from its bytes (the name only breaks a tie for .splat).

Format names: ``"ply"`` (standard 3DGS PLY), ``"compressed_ply"`` (PlayCanvas SuperSplat),
``"splat"`` (antimatter15), ``"spz"`` (Niantic), ``"glb"`` and ``"gltf"`` (glTF 2.0 binary and JSON,
read for their KHR_gaussian_splatting primitives).
"""
from __future__ import annotations

import os
import zlib

import numpy as np

from .errors import FormatError
from .ply_elements import read_head, read_header
from .table import FORMAT_NAMES, format_for_extension

__all__ = ["FORMAT_NAMES", "detect_format", "format_for_extension"]


# Files people mistake for splats, named so the error says what the file really is.
OTHER_MAGIC = [
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"%PDF", "a PDF document"),
    (b"BLENDER", "a .blend file"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file"),
    (b"\x76\x2f\x31\x01", "an OpenEXR image"),
]
SPZ_MAGIC = b"NGSP"
GLB_MAGIC = b"glTF"
SPLAT_ROW_BYTES = 32


def detect_format(path: str | os.PathLike) -> str:
    """The format of the splat file at ``path``; FormatError when it is none of them."""
    size, head = read_head(path)
    if size == 0:
        raise FormatError(path, "the file is empty")
    if head.startswith(b"ply"):
        header = read_header(path, head)
        chunk, vertex = header.element("chunk"), header.element("vertex")
        if chunk is not None and vertex is not None and any(n == "packed_position" for n, _ in vertex.properties):
            return "compressed_ply"
        return "ply"
    if head.startswith(SPZ_MAGIC):
        return "spz"
    if head.startswith(GLB_MAGIC):
        return "glb"
    if _looks_like_gltf_json(path, head):
        return "gltf"
    if head.startswith(b"\x1f\x8b"):
        if _gunzip_head(head).startswith(SPZ_MAGIC):
            return "spz"
        raise FormatError(path, "a gzip file that is not SPZ (no NGSP header inside)")
    for magic, what in OTHER_MAGIC:
        if head.startswith(magic):
            raise FormatError(path, f"not a splat file: this is {what}")
    if size % SPLAT_ROW_BYTES == 0 and (os.fspath(path).lower().endswith(".splat") or _plausible_splat(head)):
        return "splat"
    raise FormatError(path, f"unrecognised file: not PLY, SPZ, glTF or .splat (starts with {head[:8]!r})")


def _looks_like_gltf_json(path, head: bytes) -> bool:
    """glTF JSON: a JSON object named .gltf, or one whose first bytes name glTF's ``asset``."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text.startswith(b"{"):
        return False
    return os.fspath(path).lower().endswith(".gltf") or b'"asset"' in text[:4096]


def _gunzip_head(head: bytes) -> bytes:
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 16)
    except zlib.error:
        return b""


def _plausible_splat(head: bytes) -> bool:
    """.splat has no magic: accept nameless content only when its first rows look like splats."""
    rows = len(head) // SPLAT_ROW_BYTES
    if rows == 0:
        return False
    floats = np.frombuffer(head[:rows * SPLAT_ROW_BYTES], "<f4").reshape(rows, 8)[:, :6]
    with np.errstate(invalid="ignore"):
        return bool(np.isfinite(floats).all() and (np.abs(floats[:, :3]) < 1e7).all()
                    and (floats[:, 3:] > 0).all() and (floats[:, 3:] < 1e6).all())
