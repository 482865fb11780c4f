"""The splat formats: one table (name, label, extensions, description) that the readers, writers,
importers, exporters, file handlers and menus all read. Standard library only."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class SplatFormat:
    name: str  # what fmt= and file_format take
    label: str  # for menus
    extension: str  # what a written file ends in (x.compressed.ply is compressed PLY)
    description: str


FORMATS = (
    SplatFormat("ply", "PLY", ".ply", "Standard 3DGS PLY: lossless, read by every splat tool"),
    SplatFormat("compressed_ply", "Compressed PLY", ".compressed.ply",
                "SuperSplat compressed PLY: quantised, much smaller"),
    SplatFormat("splat", ".splat", ".splat", "antimatter15 .splat: small, no view-dependent colour"),
    SplatFormat("spz", "SPZ", ".spz", "Niantic SPZ: the smallest, quantised and compressed"),
)
FORMAT_NAMES = tuple(f.name for f in FORMATS)
BY_NAME = {f.name: f for f in FORMATS}
# The file name endings file dialogs and drag and drop offer: the last dot's part of each extension.
FILE_EXTENSIONS = tuple(dict.fromkeys("." + f.extension.rsplit(".", 1)[1] for f in FORMATS))


def format_for_extension(path: str | os.PathLike) -> str | None:
    """The format a file name asks for when writing; the longest matching extension wins."""
    name = os.fspath(path).lower()
    for f in sorted(FORMATS, key=lambda f: len(f.extension), reverse=True):
        if name.endswith(f.extension):
            return f.name
    return None


def strip_extension(path: str) -> str:
    """``path`` without the splat extension it ends in, if any."""
    fmt = format_for_extension(path)
    return path[: -len(BY_NAME[fmt].extension)] if fmt else path


def extensions_text(separator: str = ", ") -> str:
    """".ply, .splat, .spz": the endings, for menus and messages."""
    return separator.join(FILE_EXTENSIONS)
