"""Export edited splats: File > Export > Gaussian Splats and ``bpy.ops.splatwork.export_splats``.

Writes the selected splat objects as they now are (edits included, and only the splats their Splat
Controls let through to a render: not hidden by the cleanup tools, not below the Opacity Threshold,
inside the Crop Box) into one file, with each
object's world transform baked into means, rotations, scales and SH
(``bridge.formats.transform.place_splats``), so the file shows in another tool what the scene shows.
"""
from __future__ import annotations

import os
import warnings

import bpy
import numpy as np
from bpy_extras.io_utils import ExportHelper

from ...bridge.formats import FormatError, FormatWarning, table, write_splats
from ...bridge.formats.detect import format_for_extension
from ...bridge.formats.transform import place_splats
from ..common.reports import failure
from ..splats import SplatLayoutError, is_splat_object, object_to_splats, shown_in_renders
from ..splats.pointcloud import describe_splat_objects


def objects_to_export(context, use_selection: bool, collection: str = "") -> list:
    if collection:  # a collection exporter (Collection properties > Exporters) names its collection
        found = bpy.data.collections.get(collection)
        return [o for o in found.all_objects if is_splat_object(o)] if found is not None else []
    if use_selection:
        chosen = [o for o in context.selected_objects if is_splat_object(o)]
        active = context.active_object
        if not chosen and is_splat_object(active):
            chosen = [active]
        return chosen
    return [o for o in context.view_layer.objects if is_splat_object(o)]


def export_objects(objects, filepath: str, fmt: str, sh_degree: int | None, apply_transform: bool = True,
                   visible_only: bool = True) -> int:
    """Write ``objects`` to ``filepath``; returns the splat count. FormatError names file and problem.
    ``visible_only`` leaves out the splats each object's controls hide from renders."""
    entries = []
    for obj in objects:
        splats = object_to_splats(obj, apply_transform=False)
        shown = shown_in_renders(obj) if visible_only else None
        if shown is not None:
            splats = splats.subset(shown)
        if sh_degree is not None:
            # Dropping bands first lets a non-uniform scale bake exactly when SH degree 0 is asked for.
            splats = splats.with_sh_degree(min(sh_degree, splats.sh_degree))
        matrix = np.array(obj.matrix_world, dtype=np.float64) if apply_transform else np.eye(4)
        entries.append((f"{filepath} (object {obj.name!r})", splats, matrix))
    merged = place_splats(entries)
    write_splats(filepath, merged, fmt=fmt, sh_degree=sh_degree)
    return len(merged)


class SPLATWORK_OT_export_splats(bpy.types.Operator, ExportHelper):
    """Export the selected splat objects, transform and edits baked in, as PLY, compressed PLY, .splat, SPZ or glTF"""

    bl_idname = "splatwork.export_splats"
    bl_label = "Export Gaussian Splats"
    bl_options = {"REGISTER"}

    filename_ext = ".ply"
    filter_glob: bpy.props.StringProperty(default=";".join("*" + e for e in table.FILE_EXTENSIONS),
                                          options={"HIDDEN"})
    file_format: bpy.props.EnumProperty(
        name="Format",
        items=[("AUTO", "From File Name", "Pick the format from the file's extension")]
        + [(f.name.upper(), f.label, f.description) for f in table.FORMATS],
        default="AUTO",
    )
    sh_degree: bpy.props.EnumProperty(
        name="SH Degree",
        description="View-dependent colour bands to write",
        items=[("KEEP", "Keep", "Write the bands the splats have"),
               ("0", "0 (no view-dependent colour)", "Smallest; also allows a non-uniform scale"),
               ("1", "1", ""), ("2", "2", ""), ("3", "3", "")],
        default="KEEP",
    )
    use_selection: bpy.props.BoolProperty(
        name="Selected Only", description="Export the selected splat objects (off: every one in the view layer)",
        default=True,
    )
    apply_transform: bpy.props.BoolProperty(
        name="Apply Transform", description="Bake each object's world transform into its splats", default=True,
    )
    visible_only: bpy.props.BoolProperty(
        name="Visible Splats Only", default=True,
        description="Leave out the splats the Splat Controls hide from renders: hidden by the cleanup tools, "
        "below the Opacity Threshold or outside the Crop Box",
    )
    collection: bpy.props.StringProperty(
        name="Collection", description="Export this collection's splat objects (set by collection exporters)",
        options={"HIDDEN", "SKIP_SAVE"},
    )

    def check(self, context):
        # Keep the file name's extension in step with the chosen format.
        if self.file_format == "AUTO":
            return False
        wanted = table.BY_NAME[self.file_format.lower()].extension
        if self.filepath.lower().endswith(wanted):
            return False
        self.filepath = table.strip_extension(self.filepath) + wanted
        return True

    def invoke(self, context, event):
        objects = objects_to_export(context, True)
        if objects and not self.filepath:
            folder = os.path.dirname(bpy.data.filepath) if bpy.data.filepath else ""
            self.filepath = os.path.join(folder, bpy.path.clean_name(objects[0].name) + self.filename_ext)
        return ExportHelper.invoke(self, context, event)

    def execute(self, context):
        path = bpy.path.abspath(self.filepath)
        fmt = self.file_format.lower() if self.file_format != "AUTO" else format_for_extension(path)
        if fmt is None:
            self.report({"ERROR"}, f"{path}: the file name does not say which splat format to write; "
                        "end it in " + ", ".join(f.extension for f in table.FORMATS) + ", or choose a format")
            return {"CANCELLED"}
        objects = objects_to_export(context, self.use_selection, self.collection)
        if not objects:
            where = f"in collection {self.collection!r}" if self.collection else "selected (or turn off Selected Only)"
            self.report({"ERROR"}, f"No splat object to export {where}: Splatwork looks for {describe_splat_objects()}")
            return {"CANCELLED"}
        degree = None if self.sh_degree == "KEEP" else int(self.sh_degree)
        try:
            # What a format drops (SH bands in .splat, extras) is worth telling the artist about.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", FormatWarning)
                count = export_objects(objects, path, fmt, degree, self.apply_transform, self.visible_only)
        except (FormatError, SplatLayoutError, OSError) as exc:
            self.report({"ERROR"}, f"Export failed: {exc}")
            return {"CANCELLED"}
        except Exception as exc:  # noqa: BLE001 - an operator reports, it never raises a traceback
            self.report({"ERROR"}, f"Export failed: {path}: {failure(exc)}")
            return {"CANCELLED"}
        for warning in caught:
            self.report({"WARNING"}, str(warning.message))
        self.report({"INFO"}, f"Exported {count:,} splats from {len(objects)} object(s) to {path}")
        return {"FINISHED"}


def _menu_entry(self, context):
    self.layout.operator(SPLATWORK_OT_export_splats.bl_idname, text=f"Gaussian Splats ({table.extensions_text()})")


class SPLATWORK_FH_export_splats(bpy.types.FileHandler):
    """Offers the export in Collection properties > Exporters (Blender 4.2+)."""

    bl_idname = "SPLATWORK_FH_export_splats"
    bl_label = "Gaussian Splats"
    bl_export_operator = SPLATWORK_OT_export_splats.bl_idname
    bl_file_extensions = ";".join(table.FILE_EXTENSIONS)


_classes = (SPLATWORK_OT_export_splats, SPLATWORK_FH_export_splats)


def register() -> None:
    for cls in _classes:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_export.append(_menu_entry)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_export.remove(_menu_entry)
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
