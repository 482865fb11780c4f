"""File > Import > Gaussian Splats, ``bpy.ops.splatwork.import_splats``, drag and drop, and the crop box."""
from __future__ import annotations

import os
import warnings

import bpy
from bpy.props import BoolProperty, CollectionProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper
from mathutils import Vector

from ...bridge.formats import FormatError
from ...bridge.formats.table import extensions_text
from ..common import compat
from ..common.reports import failure
from .controls import attach_splat_modifier, splat_modifier
from .importer import EXTENSIONS, import_splats
from .pointcloud import (
    convert_legacy,
    describe_splat_objects,
    is_legacy,
    is_splat_object,
    make_native,
)


class SPLATWORK_OT_import_splats(bpy.types.Operator, ImportHelper):
    """Import Gaussian splats (.ply, .spz, .splat) as a point cloud with a splat preview"""

    bl_idname = "splatwork.import_splats"
    bl_label = "Import Gaussian Splats"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filter_glob: StringProperty(default=";".join("*" + e for e in EXTENSIONS), options={"HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    sh_degree: IntProperty(name="SH Degree", default=3, min=0, max=3,
                           description="Highest SH band the preview shows (the data keeps all bands)")
    z_up: BoolProperty(name="Y Down to Z Up", default=True,
                       description="Turn the object so a y-down (COLMAP/3DGS) scene stands upright")
    setup_render: BoolProperty(name="Set Up Cycles", default=True,
                               description="Raise Cycles' transparent bounces so deep splat layers render")

    def execute(self, context):
        paths = [os.path.join(self.directory, f.name) for f in self.files if f.name] or [self.filepath]
        imported = []
        for path in paths:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    imported.append(import_splats(path, context.collection, self.sh_degree, self.z_up,
                                                  self.setup_render))
            except FormatError as exc:  # names the file and the problem
                self.report({"ERROR"}, f"Cannot import splats: {exc}")
                return {"CANCELLED"} if not imported else {"FINISHED"}
            except Exception as exc:  # noqa: BLE001 - an operator reports, it never raises a traceback
                self.report({"ERROR"}, f"Cannot import splats: {path}: {failure(exc)}")
                return {"CANCELLED"} if not imported else {"FINISHED"}
            for warning in caught:  # oddities the reader tolerated, e.g. trailing bytes
                self.report({"WARNING"}, str(warning.message))
        for obj in context.view_layer.objects.selected:
            obj.select_set(False)
        for obj in imported:
            obj.select_set(True)
        context.view_layer.objects.active = imported[-1]
        self.report({"INFO"}, f"Imported {sum(len(o.data.points) for o in imported):,} splats")
        return {"FINISHED"}

    def invoke(self, context, event):
        dropped = (self.directory and any(f.name for f in self.files)) or os.path.isfile(self.filepath)
        if dropped:  # drag and drop, or a script that passed the file: no file browser
            return self.execute(context)
        return ImportHelper.invoke(self, context, event)


class SPLATWORK_OT_add_crop_box(bpy.types.Operator):
    """Add a box around the active splat object that hides the splats outside it (scale or move it)"""

    bl_idname = "splatwork.add_crop_box"
    bl_label = "Add Crop Box"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        if is_splat_object(context.active_object):
            return True
        cls.poll_message_set(f"The active object is not a splat object: Splatwork looks for {describe_splat_objects()}")
        return False

    def execute(self, context):
        obj = context.active_object
        mod = splat_modifier(obj) or attach_splat_modifier(obj, context.scene)
        corners = [Vector(c) for c in obj.bound_box]
        low = Vector(min(c[i] for c in corners) for i in range(3))
        high = Vector(max(c[i] for c in corners) for i in range(3))
        box = bpy.data.objects.new(f"{obj.name} Crop Box", None)
        box.empty_display_type = "CUBE"  # it draws its local [-1, 1]^3: exactly what is kept
        box.parent = obj  # moves with the splats; its transform is in the splats' own space
        box.location = (low + high) / 2
        # A hair larger than the bounds, so the outermost splats stay inside despite rounding.
        box.scale = [(h - lo) / 2 * 1.001 + 1e-6 for lo, h in zip(low, high, strict=True)]
        for collection in obj.users_collection:
            collection.objects.link(box)
        compat.set_modifier_input(mod, "Crop Box", box)
        obj.update_tag()
        return {"FINISHED"}


class SPLATWORK_OT_convert_splats(bpy.types.Operator):
    """Rewrite the selected splat objects in Splatwork's current layout (Blender's splat attributes),
    native Gaussian splats on Blender 5.3+, with the right controls; Splatwork 0.1 objects need this"""

    bl_idname = "splatwork.convert_splats"
    bl_label = "Convert to Native Splats" if compat.NATIVE_SPLATS else "Update Splat Layout"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        chosen = [o for o in context.selected_objects if is_splat_object(o)]
        if not chosen and is_splat_object(context.active_object):
            chosen = [context.active_object]
        if not chosen:
            self.report({"ERROR"}, f"Nothing to convert: select {describe_splat_objects()}")
            return {"CANCELLED"}
        done = 0
        for obj in chosen:
            try:
                if compat.NATIVE_SPLATS:
                    make_native(obj)
                elif is_legacy(obj):
                    convert_legacy(obj)
                attach_splat_modifier(obj, context.scene)
                done += 1
            except Exception as exc:  # noqa: BLE001 - operators report, never raise
                self.report({"ERROR"}, f"Cannot convert {obj.name!r}: {failure(exc)}")
        if not done:
            return {"CANCELLED"}
        self.report({"INFO"}, f"Converted {done} splat object{'s' if done != 1 else ''}")
        return {"FINISHED"}


def menu_import(self, context):
    label = f"Gaussian Splats (Splatwork: {extensions_text('/')})"
    self.layout.operator(SPLATWORK_OT_import_splats.bl_idname, text=label)


class SPLATWORK_FH_splats(bpy.types.FileHandler):
    bl_idname = "SPLATWORK_FH_splats"
    bl_label = "Gaussian Splats (Splatwork)"
    bl_import_operator = "splatwork.import_splats"
    bl_file_extensions = ";".join(EXTENSIONS)

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D"


CLASSES = (SPLATWORK_OT_import_splats, SPLATWORK_OT_add_crop_box, SPLATWORK_OT_convert_splats, SPLATWORK_FH_splats)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister():
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
