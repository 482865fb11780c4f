"""Opening a photo with Pillow, bounded: the one way the bridge opens the artist's images.

Pillow reads the size from the header without decoding; :func:`open_photo` refuses a photo whose
header claims more than :data:`MAX_PHOTO_PIXELS` before a pixel is decoded, naming the file, its size
and the limit (a PNG of a few kilobytes can claim 60000x45000 pixels: 8 GB decoded). Pillow's own
guard (``DecompressionBombError``, at 179 million pixels, with its own words and no file name) is
replaced by this one: the bridge is a process of its own, so the setting touches nothing else.
"""
from __future__ import annotations

import os

from .protocol.jobs import MAX_PHOTO_PIXELS

__all__ = ["MAX_PHOTO_PIXELS", "PhotoTooLarge", "open_photo"]


class PhotoTooLarge(ValueError):
    """A photo whose header claims more pixels than :data:`MAX_PHOTO_PIXELS`: the message names the file,
    ``detail`` says the rest without it (for a list of files)."""

    def __init__(self, path: str | os.PathLike, size: tuple[int, int], limit: int):
        w, h = size
        self.path, self.size, self.limit = os.fspath(path), size, limit
        self.detail = f"the image is {w:,}x{h:,} ({w * h:,} pixels), more than the {limit:,} pixels Splatwork decodes"
        super().__init__(f"{self.path}: {self.detail}")


def open_photo(path: str | os.PathLike, limit: int = MAX_PHOTO_PIXELS):
    """``PIL.Image.open(path)`` (lazy: nothing decoded yet), after checking the size its header claims.

    Raises PhotoTooLarge (a ValueError), or what Pillow raises for an unreadable file (OSError,
    ``UnidentifiedImageError``, SyntaxError, ValueError).
    """
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # checked here, naming the file; see the module's docstring
    img = Image.open(path)
    w, h = img.size
    if w * h > limit:
        img.close()
        raise PhotoTooLarge(path, (w, h), limit)
    return img
