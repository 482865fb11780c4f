"""The Splatwork sidebar tab in the 3D viewport: import, and the preview controls of the active splat object."""
from __future__ import annotations

import bpy

from .pointcloud import is_splat_object
from .preview_nodes import INPUTS, MODIFIER_NAME, input_identifier


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
        layout.label(text=f"{obj.name}: {len(obj.data.points):,} splats")
        mod = obj.modifiers.get(MODIFIER_NAME)
        if mod is None or mod.node_group is None:
            layout.label(text="No splat preview on this object", icon="ERROR")
            return
        layout.operator("splatwork.add_crop_box", icon="MESH_CUBE")
        col = layout.column()
        for name, *_ in INPUTS:
            if name not in ("Render Width", "Viewport Camera"):  # kept up to date by Splatwork
                col.prop(mod, f'["{input_identifier(mod.node_group, name)}"]', text=name)


def register():
    bpy.utils.register_class(SPLATWORK_PT_splats)


def unregister():
    bpy.utils.unregister_class(SPLATWORK_PT_splats)
