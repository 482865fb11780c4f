"""The Splatwork sidebar tab in the 3D viewport: import, and the preview controls of the active splat object."""
from __future__ import annotations

import bpy

from ..common import compat
from .controls import splat_modifier
from .pointcloud import is_legacy, is_native, is_splat_object
from .preview_nodes import INPUTS


class SPLATWORK_PT_splats(bpy.types.Panel):
    bl_label = "Splats"
    bl_idname = "SPLATWORK_PT_splats"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Splatwork"

    def draw(self, context):
        layout = self.layout
        layout.operator("splatwork.import_splats", icon="IMPORT")
        obj = context.active_object
        if not is_splat_object(obj):
            return
        kind = "native Gaussian splats" if is_native(obj) else "splats"
        layout.label(text=f"{obj.name}: {len(obj.data.points):,} {kind}")
        if is_legacy(obj) or (compat.NATIVE_SPLATS and not is_native(obj)):
            box = layout.box()
            box.label(text="Made by an older Splatwork or Blender" if is_legacy(obj) else "Not a native splat yet",
                      icon="INFO")
            box.operator("splatwork.convert_splats", icon="FILE_REFRESH")
        layout.operator("splatwork.add_crop_box", icon="MESH_CUBE")
        mod = splat_modifier(obj)
        if mod is None:
            layout.label(text="No Splatwork controls on this object (Add Crop Box adds them)", icon="INFO")
            return
        col = layout.column()
        names = {item.name for item in mod.node_group.interface.items_tree if item.item_type == "SOCKET"}
        for name, *_ in INPUTS:
            if name in names and name not in ("Render Width", "Viewport Camera"):  # kept up to date by Splatwork
                owner, prop = compat.modifier_input(mod, name)
                col.prop(owner, prop, text=name)


def register():
    bpy.utils.register_class(SPLATWORK_PT_splats)


def unregister():
    bpy.utils.unregister_class(SPLATWORK_PT_splats)
