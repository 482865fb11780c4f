"""Splat and camera file formats: numpy and the standard library only.

Both the add-on (inside Blender) and the bridge import this package, so nothing here may import
bpy, torch or gsplat. Public API: ``SplatSet``, ``FormatError``, ``FormatWarning``,
``read_splats``, ``write_splats``, ``detect_format``.

Formats: ``"ply"`` (standard 3DGS, lossless), ``"compressed_ply"`` (SuperSplat), ``"splat"``
(antimatter15) and ``"spz"`` (Niantic); each module's docstring states its error bounds.
"""
from __future__ import annotations

import os

from .detect import FORMAT_NAMES, detect_format, format_for_extension
from .errors import FormatError, FormatWarning
from .splatset import SH_C0, SH_REST_COUNT, SplatSet
from .table import BY_NAME, FILE_EXTENSIONS, FORMATS, SplatFormat

__all__ = ["FILE_EXTENSIONS", "FORMATS", "FORMAT_NAMES", "SH_C0", "FormatError", "FormatWarning", "SplatFormat",
           "SplatSet", "detect_format",
           "read_splats", "write_splats"]


def read_splats(path: str | os.PathLike) -> SplatSet:
    """Read any supported splat file; the format comes from the content.

    Raises FormatError (naming the file and the problem) for anything that is not a valid,
    non-empty splat file with finite values; warns with FormatWarning for oddities it tolerates.
    """
    splats = BY_NAME[detect_format(path)].read(path)
    _check(path, splats)
    return splats


def write_splats(
    path: str | os.PathLike,
    splats: SplatSet,
    fmt: str | None = None,
    sh_degree: int | None = None,
    **options,
) -> None:
    """Write ``splats`` atomically; the format is ``fmt`` or comes from the file name.

    ``sh_degree`` truncates (or zero-pads) the SH bands first. ``options`` go to the format's
    writer (``version=2|3|4`` for SPZ).
    """
    fmt = fmt or format_for_extension(path)
    if fmt not in FORMAT_NAMES:
        what = f"unknown splat format {fmt!r}" if fmt else "the file name does not say which splat format to write"
        raise FormatError(path, f"{what}: use one of {', '.join(FORMAT_NAMES)} or a "
                          + " / ".join(f.extension for f in FORMATS) + " file name")
    if sh_degree is not None:
        if sh_degree not in SH_REST_COUNT:
            raise FormatError(path, f"SH degree {sh_degree} is not supported (0 to 3)")
        splats = splats.with_sh_degree(sh_degree)
    _check(path, splats)
    try:
        BY_NAME[fmt].write(path, splats, **options)
    except OSError as exc:
        raise FormatError(path, f"cannot write: {exc.strerror or exc}") from None


def _check(path, splats: SplatSet) -> None:
    if len(splats) == 0:
        raise FormatError(path, "contains no splats")
    bad = splats.nonfinite()
    if bad:
        raise FormatError(path, f"non-finite values (NaN or Inf): {bad}")
