"""Image sizes from file headers: checking 1,000 photos against the model must not decode them."""
from __future__ import annotations

import struct
from pathlib import Path

# JPEG start-of-frame markers (baseline, progressive, lossless...) that carry the image size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) read from a PNG or JPEG header; None for other formats or unreadable headers.

    EXIF orientation is ignored on purpose: COLMAP reads the stored pixels, not the rotated view.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)
            if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
                return struct.unpack(">II", head[16:24])
            if head.startswith(b"\xff\xd8"):
                return _jpeg_size(fh)
    except OSError:
        return None
    return None


def _jpeg_size(fh) -> tuple[int, int] | None:
    fh.seek(2)
    while True:
        byte = fh.read(1)
        while byte == b"\xff":
            byte = fh.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            continue
        length_bytes = fh.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if marker in _SOF:
            data = fh.read(5)
            if len(data) < 5:
                return None
            height, width = struct.unpack(">HH", data[1:5])
            return width, height
        if length < 2:
            return None
        fh.seek(length - 2, 1)
