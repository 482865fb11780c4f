"""A remote training run's images at the size it trains at, made here so only those pixels go over.

A job with ``downscale`` above 1 trains on each image reduced to ``TrainJob.image_size`` of its COLMAP
camera; the bridge accepts an image of any size with the camera's aspect ratio and resizes only one
that is not at that size already. So :func:`training_images` reduces the photos here, once, and the
upload sends those (a 24 MP photo at downscale 4 is a sixteenth of the pixels) - each only where it is
the smaller file: a lossless PNG at half the size can outweigh a strongly compressed JPEG, and then
the photo goes as it is and the bridge reduces it there.

- Blender does the work with its own image code: it reads the photo (the same libjpeg/libpng pixels
  as the bridge's PIL), ``Image.scale`` averages the area each output pixel covers (within 2 levels of
  the bridge's ``PIL.Image.BOX`` for whole factors), and ``Image.save`` writes a lossless 8-bit PNG.
  That runs on Blender's main thread, so the caller passes ``on_main`` (the upload runs on a thread
  of its own and hands each image over, one at a time).
- Images with an alpha channel, and those Blender reads as float (16-bit PNG, EXR), go as they are:
  Blender's scaler averages straight alpha, which would bleed the colour of invisible pixels into
  the edges, where the bridge composites over the background first and then reduces.
- A JPEG that does not end with its end-of-image marker goes as it is: Blender decodes a cut-short
  JPEG without a word (grey below the cut), where the bridge's PIL refuses it naming the file; a photo
  with data appended after the image (motion photos) goes unreduced too, and trains as usual.
- The reduced image is a PNG that keeps the model's file name, ``.jpg`` included: the remote images
  folder must hold every name the model lists, and the bridge opens images by their content (PIL
  sniffs the format), so renaming would mean rewriting the model for nothing.
- They are cached in the extension's user folder (``reduced-images``), one file per source path and
  size, named by the source's size and modification time: a photo is reduced again only when it or the
  training size changes, and an unchanged cached file keeps its own size and time, so the upload's
  manifest does not send it again. Deleting the folder is always safe.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable

from ..cameras.images import image_size

CACHE_FOLDER = "reduced-images"
CACHE_LIMIT = 4 << 30  # bytes; beyond it the oldest copies go (a copy removed is made again when needed)


def cache_dir() -> str:
    import bpy

    from ..setup.runtime import ADDON_ID

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
    from ...bridge.formats.colmap import read_model, resolve_image_path

    rec = read_model(job.model)
    files, todo = {}, []
    folder = None
    for view in rec.views:
        path = resolve_image_path(images_dir, view.name, model=job.model)
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
    if todo:
        prune_cache(folder, CACHE_LIMIT, keep=set(files.values()))
    return files


def prune_cache(folder: str, limit: int, keep: set[str] = frozenset()) -> list[str]:
    """Remove the oldest reduced copies (by when they were made) until the folder holds at most
    ``limit`` bytes, never one in ``keep`` (the run being sent); returns the paths removed."""
    entries = []
    for entry in os.scandir(folder):
        with contextlib.suppress(OSError):
            if entry.is_file():
                st = entry.stat()
                entries.append((st.st_mtime_ns, st.st_size, entry.path))
    total = sum(size for _, size, _ in entries)
    removed = []
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        if path in keep:
            continue
        with contextlib.suppress(OSError):
            os.unlink(path)
            total -= size
            removed.append(path)
    return removed


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
    """Make ``cached`` from ``path``; returns the file to send (``path`` when Blender did not reduce
    it, or when it is the smaller file)."""
    if not on_main(reduce_image, path, cached, camera_size, target):
        return path
    prefix = os.path.basename(cached).rsplit("-", 2)[0] + "-"
    for entry in os.scandir(os.path.dirname(cached)):  # the copy of an older version of the photo
        if entry.name.startswith(prefix) and entry.path != cached:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
    return _smaller(cached, path)


JPEG_TAIL = 4096  # bytes at the end of a JPEG searched for its end-of-image marker (some writers pad)


def _unterminated_jpeg(path: str) -> bool:
    """A JPEG (it starts with SOI) with no EOI marker near its end: cut short, or carrying appended data."""
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"\xff\xd8":
                return False
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - JPEG_TAIL))
            return b"\xff\xd9" not in fh.read(JPEG_TAIL)
    except OSError:
        return False  # Blender's loader names what is wrong with the file


def reduce_image(path: str, out: str, camera_size: tuple[int, int], target: tuple[int, int]) -> bool:
    """Write ``path`` reduced to ``target`` (w, h) as an 8-bit PNG at ``out``, atomically; False (and
    nothing written) for an image that goes as it is: with alpha, float, not larger than the target,
    not of the camera's shape (the bridge names that), or a JPEG without its end marker. RemoteError
    when Blender cannot read it. Main thread only (it loads a Blender image, then removes it)."""
    import bpy

    from ...bridge.client import RemoteError

    unreadable = f"{path}: Blender cannot read this image"
    hint = "Convert it to PNG or JPEG, or remove it from the model."
    if _unterminated_jpeg(path):
        return False
    try:
        image = bpy.data.images.load(path, check_existing=False)
    except RuntimeError as exc:
        raise RemoteError(f"{unreadable} ({exc})", hint) from None
    try:
        w, h = image.size
        if w == 0 or h == 0 or not image.has_data:
            raise RemoteError(f"{unreadable} (damaged, or a format it does not know)", hint)
        if image.is_float or image.depth not in (8, 24):  # 32: an alpha channel; 16-bit PNGs, EXR: float
            return False
        other_shape = abs(w * camera_size[1] - h * camera_size[0]) > max(w, h, *camera_size)
        if (w <= target[0] and h <= target[1]) or other_shape:
            return False
        image.scale(*target)
        image.file_format = "PNG"
        temp = f"{out}.{os.getpid()}.tmp.png"
        try:
            image.save(filepath=temp)
            os.replace(temp, out)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        return True
    finally:
        bpy.data.images.remove(image)
