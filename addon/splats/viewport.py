"""A hidden camera that follows the 3D viewport, so the preview's quads face the view being drawn.

Geometry nodes cannot read the viewport's view in a modifier, so a timer copies the largest 3D
viewport's view (or the scene camera while looking through it) onto this camera, which the preview
uses whenever it evaluates for the viewport; final renders keep the scene camera. The camera is
linked to no scene (the modifiers reference it, which is enough for the depsgraph) and stays at zero
scale until a viewport exists, which the preview reads as "no viewport camera" (headless runs).
"""
from __future__ import annotations

import bpy
from mathutils import Matrix

from .. import register_timer

VIEW_CAMERA = "Splatwork Viewport View"
INTERVAL = 0.1  # seconds between looks at the viewport
VIEWPORT_SENSOR = 72.0  # mm: the 3D viewport's lens setting is relative to this sensor width


def ensure_view_camera():
    cam = bpy.data.objects.get(VIEW_CAMERA)
    if cam is None or cam.type != "CAMERA":
        cam = bpy.data.objects.new(VIEW_CAMERA, bpy.data.cameras.new(VIEW_CAMERA))
        cam.scale = (0.0, 0.0, 0.0)
    return cam


def _largest_view():
    best, best_size = None, 0
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D" and area.width * area.height > best_size:
                best, best_size = (area.spaces.active, window.scene), area.width * area.height
    return best


def _settings(space, scene):
    """(matrix_world, camera settings) the viewport shows now."""
    rv3d = space.region_3d
    if rv3d.view_perspective == "CAMERA" and scene.camera is not None and scene.camera.type == "CAMERA":
        data = scene.camera.data
        return scene.camera.matrix_world.copy(), {"type": data.type, "lens": data.lens,
                                                  "sensor_width": data.sensor_width,
                                                  "sensor_fit": data.sensor_fit, "ortho_scale": data.ortho_scale}
    return rv3d.view_matrix.inverted(), {"type": "PERSP" if rv3d.is_perspective else "ORTHO", "lens": space.lens,
                                         "sensor_width": VIEWPORT_SENSOR, "sensor_fit": "AUTO",
                                         "ortho_scale": rv3d.view_distance * VIEWPORT_SENSOR / space.lens}


def sync_view_camera():
    """Timer callback: copy the viewport's view onto the view camera when it changed."""
    cam = bpy.data.objects.get(VIEW_CAMERA)
    view = _largest_view() if cam is not None and cam.type == "CAMERA" else None
    if view is None:
        return INTERVAL
    matrix, settings = _settings(*view)
    if not _close(cam.matrix_world, matrix):
        cam.matrix_world = Matrix(matrix)
    for name, value in settings.items():
        if getattr(cam.data, name) != value:
            setattr(cam.data, name, value)
    return INTERVAL


def _close(a, b) -> bool:
    return all(abs(x - y) < 1e-6 for row_a, row_b in zip(a, b, strict=True) for x, y in zip(row_a, row_b, strict=True))


def register():
    register_timer(sync_view_camera, first_interval=INTERVAL, persistent=True)


def unregister():
    pass  # addon.unregister stops the timer
