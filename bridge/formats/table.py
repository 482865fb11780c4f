"""The splat formats: one table (name, label, extensions, description, and the module that reads and
writes each) that ``read_splats``/``write_splats``, importers, exporters, file handlers and menus all
read. Standard library only; a format's module is imported when it is first used."""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class SplatFormat:
    name: str  # what fmt= and file_format take
    label: str  # for menus
    extension: str  # what a written file ends in (x.compressed.ply is compressed PLY)
    description: str
    module: str  # the module of bridge.formats whose read(path) and write(path, splats, **options) it uses

    def read(self, path: str | os.PathLike):
        """The file's splats (a SplatSet), unchecked: ``read_splats`` checks them."""
        return importlib.import_module("." + self.module, __package__).read(path)

    def write(self, path: str | os.PathLike, splats, **options) -> None:
        """Write ``splats`` in this format (atomically); ``write_splats`` checks them first."""
        importlib.import_module("." + self.module, __package__).write(path, splats, **options)


FORMATS = (
    SplatFormat("ply", "PLY", ".ply", "Standard 3DGS PLY: lossless, read by every splat tool", "ply"),
    SplatFormat("compressed_ply", "Compressed PLY", ".compressed.ply",
                "SuperSplat compressed PLY: quantised, much smaller", "compressed_ply"),
    SplatFormat("splat", ".splat", ".splat", "antimatter15 .splat: small, no view-dependent colour", "splat"),
    SplatFormat("spz", "SPZ", ".spz", "Niantic SPZ: the smallest, quantised and compressed", "spz"),
    SplatFormat("glb", "glTF Binary", ".glb",
                "glTF 2.0 with KHR_gaussian_splatting: web viewers (Babylon.js, CesiumJS, three.js, PlayCanvas)",
                "gltf"),
    SplatFormat("gltf", "glTF (embedded)", ".gltf",
                "glTF 2.0 JSON with KHR_gaussian_splatting, its data embedded (base64)", "gltf"),
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
