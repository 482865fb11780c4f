"""Making a camera active applies its own resolution and pixel aspect to the scene.

Three ways in: the panel's camera list, ``bpy.ops.splatwork.activate_camera(camera=NAME)`` for
scripts, and a frame-change handler for the animated camera, whose settings change every frame.
A message-bus subscription also catches ``scene.camera`` being set by hand in the UI.
"""
from __future__ import annotations

import bpy
from bpy.app.handlers import persistent
from bpy.props import StringProperty

from .keys import FRAME_START_KEY, FRAMES_KEY

_MSGBUS_OWNER = object()


def camera_render_settings(obj, frame: int) -> tuple[int, int, float, float] | None:
    """(width, height, pixel_aspect_x, pixel_aspect_y) this camera renders with, or None."""
    if obj is None or obj.type != "CAMERA":
        return None
    data = obj.data
    table = data.get(FRAMES_KEY)
    if table is not None and len(table) >= 4:
        i = min(max(frame - int(data.get(FRAME_START_KEY, 1)), 0), len(table) // 4 - 1)
        w, h, ax, ay = table[4 * i: 4 * i + 4]
        return int(w), int(h), float(ax), float(ay)
    s = data.splatwork_colmap
    if not s.is_colmap:
        return None
    return s.resolution_x, s.resolution_y, s.pixel_aspect_x, s.pixel_aspect_y


def apply_camera_settings(scene, obj) -> bool:
    """Copy ``obj``'s own render settings to ``scene``; False if it has none (any other camera)."""
    settings = camera_render_settings(obj, scene.frame_current)
    if settings is None:
        return False
    r = scene.render
    w, h, ax, ay = settings
    # Writing equal values would still tag the scene for a redraw on every frame.
    if (r.resolution_x, r.resolution_y) != (w, h):
        r.resolution_x, r.resolution_y = w, h
    if abs(r.pixel_aspect_x - ax) > 1e-7 or abs(r.pixel_aspect_y - ay) > 1e-7:
        r.pixel_aspect_x, r.pixel_aspect_y = ax, ay
    return True


def activate_camera(scene, obj) -> None:
    scene.camera = obj
    apply_camera_settings(scene, obj)


@persistent
def _on_frame_change(scene, _depsgraph=None):
    camera = scene.camera
    if camera is not None and camera.type == "CAMERA" and FRAMES_KEY in camera.data:
        apply_camera_settings(scene, camera)


def _on_scene_camera_set():
    scene = bpy.context.scene
    if scene is not None:
        apply_camera_settings(scene, scene.camera)


def _subscribe():
    bpy.msgbus.clear_by_owner(_MSGBUS_OWNER)
    bpy.msgbus.subscribe_rna(key=(bpy.types.Scene, "camera"), owner=_MSGBUS_OWNER, args=(),
                             notify=_on_scene_camera_set)


@persistent
def _on_load_post(*_args):
    # Message-bus subscriptions die with the file that was open.
    _subscribe()


class SPLATWORK_OT_activate_camera(bpy.types.Operator):
    """Make this camera the scene camera and apply its resolution and pixel aspect"""

    bl_idname = "splatwork.activate_camera"
    bl_label = "Activate Camera"
    bl_options = {"REGISTER", "UNDO"}

    camera: StringProperty(name="Camera", description="Name of the camera object")

    def execute(self, context):
        obj = bpy.data.objects.get(self.camera)
        if obj is None or obj.type != "CAMERA":
            self.report({"ERROR"}, f"no camera object named {self.camera!r}")
            return {"CANCELLED"}
        activate_camera(context.scene, obj)
        return {"FINISHED"}


def register():
    bpy.utils.register_class(SPLATWORK_OT_activate_camera)
    bpy.app.handlers.frame_change_pre.append(_on_frame_change)
    bpy.app.handlers.load_post.append(_on_load_post)
    _subscribe()


def unregister():
    bpy.msgbus.clear_by_owner(_MSGBUS_OWNER)
    for handlers, fn in ((bpy.app.handlers.load_post, _on_load_post),
                         (bpy.app.handlers.frame_change_pre, _on_frame_change)):
        while fn in handlers:
            handlers.remove(fn)
    bpy.utils.unregister_class(SPLATWORK_OT_activate_camera)
