"""A remote training run's images at the size it trains at, made here so only those pixels go over.

A job with ``downscale`` above 1 trains on each image reduced to ``TrainJob.image_size`` of its COLMAP
camera; the bridge accepts an image of any size with the camera's aspect ratio and resizes only one
that is not at that size already. So :func:`training_images` reduces the photos here, once, and the
upload sends those (a 24 MP photo at downscale 4 is a sixteenth of the pixels) - each only where it is
the smaller file: a lossless PNG at half the size can outweigh a strongly compressed JPEG, and then
the photo goes as it is and the bridge reduces it there.

- Reduction is an exact area average (each output pixel the mean of the source area it covers,
  fractions of pixels included), over premultiplied alpha so transparent pixels do not bleed their
  colour. For whole-number factors that is what the bridge's own ``PIL.Image.BOX`` resize computes
  (within rounding); for others PIL counts whole pixels only and this is the more exact of the two.
- Decoding uses Blender's image reader (``bpy.data.images``, the same libjpeg/libpng results as PIL's):
  that must happen on Blender's main thread, so the caller passes ``on_main`` (the upload runs on a
  thread of its own and hands the decode over); the averaging and the PNG encoding run on the caller's
  thread. Images Blender reads as float (16-bit PNG, EXR) go as they are: the bridge reduces those.
- The reduced image is a lossless 8-bit PNG that keeps the model's file name, ``.jpg`` included: the
  remote images folder must hold every name the model lists, and the bridge opens images by their
  content (PIL sniffs the format), so renaming would mean rewriting the model for nothing.
- They are cached in the extension's user folder (``reduced-images``), one file per source path and
  size, named by the source's size and modification time: a photo is reduced again only when it or the
  training size changes, and an unchanged cached file keeps its own size and time, so the upload's
  manifest does not send it again. Deleting the folder is always safe.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import tempfile
import zlib
from collections.abc import Callable

import numpy as np

from ..bridge.formats.atomic import atomic_write
from .colmap.images import image_size

CACHE_FOLDER = "reduced-images"
_COLUMNS = 512  # columns averaged at a time: bounds the integer sums' memory for large photos


def cache_dir() -> str:
    import bpy

    from .runtime import ADDON_ID

    try:
        return bpy.utils.extension_path_user(ADDON_ID, path=CACHE_FOLDER, create=True)
    except ValueError:  # not running as an installed extension
        path = os.path.join(tempfile.gettempdir(), "splatwork-" + CACHE_FOLDER)
        os.makedirs(path, exist_ok=True)
        return path


def call(fn, *args):
    """``on_main`` for a caller that is on Blender's main thread already."""
    return fn(*args)


def training_images(job, images_dir: str, on_main: Callable = call,
                    progress: Callable[[int, int, str], None] | None = None) -> dict[str, str]:
    """The model's images as the run needs them: name in the model -> local file (the photo itself, or
    its reduced copy in the cache). Images missing from ``images_dir`` are left out (the bridge names
    them). ``progress(done, total, name)`` is told of each image reduced now (not of those cached). A
    RemoteError names an image Blender cannot read."""
    from ..bridge.formats.colmap import read_model

    rec = read_model(job.model)
    files, todo = {}, []
    folder = None
    for view in rec.views:
        path = os.path.join(images_dir, view.name)
        if not os.path.isfile(path):
            continue
        files[view.name] = path
        camera = rec.cameras[view.camera_id]
        target = job.image_size(camera.width, camera.height)
        if target == (camera.width, camera.height) or _at_most(image_size(path), target):
            continue
        folder = folder or cache_dir()
        cached = _cache_path(folder, path, target)
        if os.path.isfile(cached):
            files[view.name] = _smaller(cached, path)
        else:
            todo.append((view.name, path, cached, (camera.width, camera.height), target))
    for i, (name, path, cached, camera_size, target) in enumerate(todo):
        files[name] = _reduce_file(path, cached, camera_size, target, on_main)
        if progress is not None:
            progress(i + 1, len(todo), name)
    return files


def _at_most(size: tuple[int, int] | None, target: tuple[int, int]) -> bool:
    return size is not None and size[0] <= target[0] and size[1] <= target[1]


def _cache_path(folder: str, path: str, target: tuple[int, int]) -> str:
    """One name per source file and size, for this version of it (its size and modification time)."""
    st = os.stat(path)
    source = hashlib.sha1(os.path.abspath(path).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return os.path.join(folder, f"{source}-{target[0]}x{target[1]}-{st.st_size:x}-{st.st_mtime_ns:x}.png")


def _smaller(cached: str, path: str) -> str:
    return cached if os.path.getsize(cached) < os.path.getsize(path) else path


def _reduce_file(path: str, cached: str, camera_size: tuple[int, int], target: tuple[int, int], on_main) -> str:
    """Make ``cached`` from ``path``; returns the file to send (``path`` when it is not larger than
    the target, not of the camera's shape, a float image or the smaller file)."""
    rgba = on_main(decode, path)
    if rgba is None:  # a float image: the bridge reads and reduces it itself
        return path
    h, w = rgba.shape[:2]
    if (w <= target[0] and h <= target[1]) or abs(w * camera_size[1] - h * camera_size[0]) > max(w, h, *camera_size):
        return path  # as it is (the bridge names an image of the wrong shape)
    with atomic_write(cached) as fh:
        fh.write(png_bytes(reduce(rgba, target)))
    prefix = os.path.basename(cached).rsplit("-", 2)[0] + "-"
    for entry in os.scandir(os.path.dirname(cached)):  # the copy of an older version of the photo
        if entry.name.startswith(prefix) and entry.path != cached:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
    return _smaller(cached, path)


def decode(path: str) -> np.ndarray | None:
    """The image's pixels as (H, W, 4) uint8, top row first, alpha straight; None for a float image.
    Main thread only (it loads a Blender image, then removes it)."""
    import bpy

    from .remote import RemoteError

    try:
        image = bpy.data.images.load(path, check_existing=False)
    except RuntimeError as exc:
        raise RemoteError(f"{path}: Blender cannot read this image ({exc})",
                       "Convert it to PNG or JPEG, or remove it from the model.") from None
    try:
        w, h = image.size
        if w == 0 or h == 0 or not image.has_data:
            raise RemoteError(f"{path}: Blender cannot read this image (damaged, or a format it does not know)",
                           "Convert it to PNG or JPEG, or remove it from the model.")
        if image.is_float:
            return None
        pixels = np.empty(w * h * 4, np.float32)
        image.pixels.foreach_get(pixels)  # byte images: the stored bytes / 255, no colour conversion
    finally:
        bpy.data.images.remove(image)
    return np.rint(pixels.reshape(h, w, 4)[::-1] * 255.0).astype(np.uint8)


def reduce(rgba: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgba`` (H, W, 4) uint8 reduced to ``size`` (w, h) by an exact area average; (h, w, 3) when the
    image is opaque, else (h, w, 4) with straight alpha averaged over premultiplied colour."""
    alpha = rgba[..., 3:4]
    opaque = bool((alpha == 255).all())
    if opaque:
        sums = rgba[..., :3]
    else:
        # Integer products: the sums stay exact (255 * 255 * 65535 rows fits in 64 bits easily).
        sums = np.concatenate([rgba[..., :3].astype(np.uint32) * alpha, alpha.astype(np.uint32) * 255], axis=2)
    w, h = size
    rows = np.concatenate([_area_mean(sums[:, c:c + _COLUMNS], h, 0)
                           for c in range(0, sums.shape[1], _COLUMNS)], axis=1)
    out = _area_mean(rows, w, 1)
    if opaque:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    a = out[..., 3:4]  # alpha * 255
    colour = np.divide(out[..., :3] * 255.0, a, out=np.zeros_like(out[..., :3]), where=a > 0)
    return np.clip(np.rint(np.concatenate([colour, a / 255.0], axis=2)), 0, 255).astype(np.uint8)


def _area_mean(values: np.ndarray, count: int, axis: int) -> np.ndarray:
    """The mean of ``values`` over ``count`` equal spans of ``axis``: differences of the running sum,
    read between samples where a span ends inside a pixel (that pixel counts by the part covered)."""
    size = values.shape[axis]
    running = np.cumsum(values, axis=axis, dtype=np.float64 if values.dtype.kind == "f" else np.uint64)
    running = np.concatenate([np.zeros_like(np.take(running, [0], axis=axis)), running], axis=axis)
    edges = np.arange(count + 1) * (size / count)
    whole = np.minimum(edges.astype(np.int64), size - 1)
    part = (edges - whole).reshape([-1 if a == axis else 1 for a in range(values.ndim)])
    low = np.take(running, whole, axis=axis).astype(np.float64)
    high = np.take(running, whole + 1, axis=axis).astype(np.float64)
    at_edges = low + (high - low) * part
    return np.diff(at_edges, axis=axis) / (size / count)


def png_bytes(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB or RGBA PNG. Every row has the "Up" filter: on photos it compresses better than
    the other single filters, and within a few percent of choosing one per row."""
    h, w, channels = pixels.shape
    up = np.diff(pixels, axis=0, prepend=np.zeros((1, w, channels), np.uint8))  # uint8: wraps modulo 256
    raw = np.concatenate([np.full((h, 1), 2, np.uint8), up.reshape(h, w * channels)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 6 if channels == 4 else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
            + chunk(b"IEND", b""))
