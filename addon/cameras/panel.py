"""The sidebar panel: import, the imported cameras as a list (picking one activates it), export."""
from __future__ import annotations

import bpy

from .keys import FRAMES_KEY, PARAMS_KEY


class SPLATWORK_UL_colmap_cameras(bpy.types.UIList):
    def draw_item(self, _context, layout, _data, item, _icon, _active_data, _active_prop, _index=0):
        icon = "OUTLINER_OB_CAMERA" if item.type == "CAMERA" else "OUTLINER_OB_POINTCLOUD"
        layout.label(text=item.name, icon=icon)

    def filter_items(self, _context, data, propname):
        objects = getattr(data, propname)
        flags = [self.bitflag_filter_item if o.type == "CAMERA" else 0 for o in objects]
        if self.filter_name:
            pattern = self.filter_name.lower()
            flags = [f if pattern in o.name.lower() else 0 for f, o in zip(flags, objects, strict=True)]
        return flags, []


class SPLATWORK_PT_colmap(bpy.types.Panel):
    bl_label = "COLMAP Cameras"
    bl_idname = "SPLATWORK_PT_colmap"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Splatwork"

    def draw(self, context):
        layout = self.layout
        scene = context.scene
        state = scene.splatwork_colmap
        row = layout.row(align=True)
        row.operator("splatwork.import_colmap", icon="IMPORT")
        row.operator("splatwork.make_synthetic_scene", text="Synthetic", icon="SCENE_DATA")
        layout.prop(state, "collection")
        if state.collection is not None:
            layout.template_list("SPLATWORK_UL_colmap_cameras", "", state.collection, "objects", state,
                                 "camera_index", rows=6)
        camera = scene.camera
        if camera is not None and camera.type == "CAMERA":
            box = layout.box()
            s = camera.data.splatwork_colmap
            box.label(text=camera.name, icon="CAMERA_DATA")
            if FRAMES_KEY in camera.data:
                box.label(text="Animated: settings change per frame")
            elif s.is_colmap:
                col = box.column(align=True)
                col.prop(s, "resolution_x")
                col.prop(s, "resolution_y")
                col.prop(s, "pixel_aspect_x")
                col.prop(s, "pixel_aspect_y")
                params = camera.data.get(PARAMS_KEY)
                box.label(text=f"{s.model}: " + ", ".join(f"{p:.6g}" for p in (params or [])))
                box.operator("splatwork.activate_camera", text="Apply to Scene").camera = camera.name
        row = layout.row(align=True)
        row.operator("splatwork.export_colmap", icon="EXPORT")
        row.operator("splatwork.export_transforms", text="transforms.json")


def _import_menu(self, _context):
    self.layout.operator("splatwork.import_colmap", text="COLMAP Model (Splatwork)")


def _export_menu(self, _context):
    self.layout.operator("splatwork.export_colmap", text="COLMAP Model (Splatwork)")
    self.layout.operator("splatwork.export_transforms", text="Cameras as transforms.json (Splatwork)")


_CLASSES = (SPLATWORK_UL_colmap_cameras, SPLATWORK_PT_colmap)


def register():
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_import.append(_import_menu)
    bpy.types.TOPBAR_MT_file_export.append(_export_menu)


def unregister():
    bpy.types.TOPBAR_MT_file_export.remove(_export_menu)
    bpy.types.TOPBAR_MT_file_import.remove(_import_menu)
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
