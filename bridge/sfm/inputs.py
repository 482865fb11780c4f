"""The photos SfM works on: checked, oriented and scaled copies of the artist's photos or video frames.

SfM never reads the artist's files directly. Every photo is decoded here first, so an unreadable
file is named before minutes of work start, phone photos are turned upright by their EXIF tag
(COLMAP ignores it), and the working size is applied once, so the model's intrinsics, the
undistorted images and the trainer all agree on one resolution.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..formats.atomic import atomic_write
from ..photos import PhotoTooLarge, open_photo
from ..protocol import EXIT_BAD_INPUT, BridgeError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
_KEPT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}  # others become PNG (lossless)
_JPEG_QUALITY = 95
_MAX_LISTED = 5  # file names quoted in one message


@dataclass
class WorkingImage:
    name: str  # file name in the working folder (what COLMAP and the model call the image)
    source: str  # the artist's file, or "video.mp4#frame 120"
    width: int
    height: int


def _bad(message: str, hint: str) -> BridgeError:
    return BridgeError("bad_input", message, hint, exit_code=EXIT_BAD_INPUT)


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def list_photos(folder: Path) -> list[Path]:
    """The photos directly inside ``folder`` (not its subfolders), sorted by name."""
    if not folder.is_dir():
        raise _bad(f"{folder}: not a folder", "Choose the folder that holds the photos.")
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: p.name)
    photos = [p for p in files if p.suffix.lower() in PHOTO_SUFFIXES]
    if not photos:
        found = _listing([p.name for p in files]) if files else "nothing"
        raise _bad(f"{folder}: no photos found (found {found})",
                   "Supported photo formats: " + ", ".join(PHOTO_SUFFIXES) + ".")
    return photos


def target_size(width: int, height: int, max_size: int) -> tuple[int, int]:
    longest = max(width, height)
    if max_size <= 0 or longest <= max_size:
        return width, height
    scale = max_size / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def prepare_photos(
    photos: list[Path], work_dir: Path, max_size: int, on_progress: Callable[[int], None],
    should_stop: Callable[[], bool],
) -> list[WorkingImage]:
    """Write an upright, scaled working copy of every photo into ``work_dir``.

    Every file's header is checked before any is written, so unreadable photos are all named at
    once; a file damaged further in fails when it is decoded, naming it. Stops early, returning
    what it has, when ``should_stop()`` says so.
    """
    unreadable: list[str] = []
    names: dict[str, Path] = {}
    for path in photos:
        try:
            with open_photo(path) as img:  # refuses a size no photo has before anything is decoded
                img.verify()  # cheap structural check; the full decode happens below
        except PhotoTooLarge as exc:
            unreadable.append(f"{path.name} ({exc.detail})")
            continue
        except (OSError, SyntaxError, ValueError) as exc:
            unreadable.append(f"{path.name} ({exc})")
            continue
        name = path.name if path.suffix.lower() in _KEPT_FORMATS else path.stem + ".png"
        # COLMAP's pair lists separate names with spaces.
        name = re.sub(r"\s+", "_", name)
        if name in names:
            raise _bad(f"{path} and {names[name]} would both become '{name}'",
                       "Rename one of them: each photo needs a unique name.")
        names[name] = path
    if unreadable:
        raise _bad(f"{len(unreadable)} of {len(photos)} photos cannot be read: {_listing(unreadable)}",
                   "Remove or re-export those files, then run again.")

    work_dir.mkdir(parents=True, exist_ok=True)
    out: list[WorkingImage] = []
    for i, (name, path) in enumerate(names.items()):
        if should_stop():
            break
        try:
            out.append(_write_working_copy(path, work_dir / name, max_size))
        except (OSError, SyntaxError, ValueError) as exc:
            raise _bad(f"{path}: cannot be read ({exc})", "Remove or re-export this file, then run again.") from exc
        on_progress(i + 1)
    return out


def _write_working_copy(path: Path, dest: Path, max_size: int) -> WorkingImage:
    from PIL import ImageOps

    with open_photo(path) as img:
        img.load()  # the full decode: a truncated file fails here
        rotated = _rotated(img)
        upright = ImageOps.exif_transpose(img) if rotated else img
        size = target_size(upright.width, upright.height, max_size)
        if not rotated and size == img.size and img.mode in ("RGB", "L") \
                and dest.suffix.lower() == path.suffix.lower():
            # Bit-exact copy: no second JPEG generation loss when nothing needs changing.
            with atomic_write(dest) as fh, open(path, "rb") as src:
                shutil.copyfileobj(src, fh)
        else:
            save_image(upright, dest, size)
    return WorkingImage(dest.name, str(path), *size)


def _rotated(img) -> bool:
    """The EXIF orientation tag asks for a rotation or mirror."""
    try:
        return int(img.getexif().get(0x0112, 1)) not in (0, 1)
    except (TypeError, ValueError):
        return False


def save_image(img, dest: Path, size: tuple[int, int]) -> None:
    """Write ``img`` at ``size`` (RGB) atomically, in the format ``dest``'s suffix names."""
    from PIL import Image

    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    if img.size != size:
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    fmt = _KEPT_FORMATS.get(dest.suffix.lower(), "PNG")
    with atomic_write(dest) as fh:
        if fmt == "JPEG":
            img.save(fh, format=fmt, quality=_JPEG_QUALITY, subsampling=0)
        else:
            img.save(fh, format=fmt)


def clear_folder(folder: Path) -> None:
    if folder.is_symlink() or folder.is_file():
        os.unlink(folder)
    elif folder.exists():
        shutil.rmtree(folder)
