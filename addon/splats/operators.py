"""File > Import > Gaussian Splats, ``bpy.ops.splatwork.import_splats``, drag and drop, and the crop box."""
from __future__ import annotations

import os
import warnings

import bpy
from bpy.props import BoolProperty, CollectionProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper
from mathutils import Vector

from .importer import import_splats
from .pointcloud import is_splat_object
from .preview_nodes import MODIFIER_NAME, input_identifier


class SPLATWORK_OT_import_splats(bpy.types.Operator, ImportHelper):
    """Import Gaussian splats (.ply, .spz, .splat) as a point cloud with a splat preview"""

    bl_idname = "splatwork.import_splats"
    bl_label = "Import Gaussian Splats"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filter_glob: StringProperty(default="*.ply;*.spz;*.splat", options={"HIDDEN"})
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
            except (ValueError, OSError, RuntimeError) as exc:  # FormatError is a ValueError
                self.report({"ERROR"}, f"Cannot import splats: {exc}")
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
        obj = context.active_object
        return is_splat_object(obj) and obj.modifiers.get(MODIFIER_NAME) is not None

    def execute(self, context):
        obj = context.active_object
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
        mod = obj.modifiers[MODIFIER_NAME]
        mod[input_identifier(mod.node_group, "Crop Box")] = box
        obj.update_tag()
        return {"FINISHED"}


def menu_import(self, context):
    self.layout.operator(SPLATWORK_OT_import_splats.bl_idname, text="Gaussian Splats (.ply/.spz/.splat)")


class SPLATWORK_FH_splats(bpy.types.FileHandler):
    bl_idname = "SPLATWORK_FH_splats"
    bl_label = "Gaussian Splats"
    bl_import_operator = "splatwork.import_splats"
    bl_file_extensions = ".ply;.spz;.splat"

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D"


CLASSES = (SPLATWORK_OT_import_splats, SPLATWORK_OT_add_crop_box, SPLATWORK_FH_splats)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister():
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
