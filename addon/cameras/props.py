"""Per-camera COLMAP settings stored on Blender camera data, and the scene's import state.

Resolution and pixel aspect belong to the scene in Blender, not to a camera, so each imported camera
carries its own and :mod:`.activate` copies them to the scene when that camera becomes active. The
full-precision COLMAP parameters (distortion included) are an ID property (double precision; RNA
float properties are single precision).
"""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from .activate import activate_camera, apply_camera_settings


def _settings_changed(self, context):
    # Editing the active camera's own settings shows at once, as editing the scene's would.
    scene = context.scene
    if scene is not None and scene.camera is not None and scene.camera.data == self.id_data:
        apply_camera_settings(scene, scene.camera)


class SPLATWORK_PG_colmap_camera(bpy.types.PropertyGroup):
    is_colmap: BoolProperty(name="COLMAP Camera", description="This camera carries its own render settings")
    resolution_x: IntProperty(name="Width", min=1, max=65536, default=1920, subtype="PIXEL",
                              update=_settings_changed)
    resolution_y: IntProperty(name="Height", min=1, max=65536, default=1080, subtype="PIXEL",
                              update=_settings_changed)
    pixel_aspect_x: FloatProperty(name="Pixel Aspect X", min=1.0, max=200.0, default=1.0, update=_settings_changed)
    pixel_aspect_y: FloatProperty(name="Pixel Aspect Y", min=1.0, max=200.0, default=1.0, update=_settings_changed)
    model: StringProperty(name="Model", description="COLMAP camera model")
    camera_id: IntProperty(name="Camera ID")
    image_id: IntProperty(name="Image ID")
    image_name: StringProperty(name="Image", description="Image name in the COLMAP model")


def _camera_index_changed(self, context):
    collection = self.collection
    if collection is None or not (0 <= self.camera_index < len(collection.objects)):
        return
    obj = collection.objects[self.camera_index]
    if obj.type == "CAMERA":
        activate_camera(context.scene, obj)


class SPLATWORK_PG_colmap_scene(bpy.types.PropertyGroup):
    collection: PointerProperty(name="Cameras", type=bpy.types.Collection,
                                description="The imported COLMAP collection shown in the panel")
    camera_index: IntProperty(name="Camera", default=-1, update=_camera_index_changed)


_CLASSES = (SPLATWORK_PG_colmap_camera, SPLATWORK_PG_colmap_scene)


def register():
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Camera.splatwork_colmap = PointerProperty(type=SPLATWORK_PG_colmap_camera)
    bpy.types.Scene.splatwork_colmap = PointerProperty(type=SPLATWORK_PG_colmap_scene)


def unregister():
    del bpy.types.Scene.splatwork_colmap
    del bpy.types.Camera.splatwork_colmap
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
