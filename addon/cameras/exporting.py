"""Blender cameras (any, not only imported ones) to a :class:`Reconstruction`, and the export operators."""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, StringProperty

from ...bridge.formats import colmap, transforms_json
from ...bridge.formats.cameras import (
    Camera,
    Reconstruction,
    View,
    blender_to_intrinsics,
    matrix_world_to_pose,
    with_pinhole,
)
from ..common.reports import failure
from .keys import FRAMES_KEY, PARAMS_KEY, POINTS_KEY, WORLD_KEY


def world_from_colmap(collection) -> np.ndarray | None:
    """The rigid 4x4 an import applied (COLMAP world -> Blender world), or None for other collections."""
    value = collection.get(WORLD_KEY) if collection is not None else None
    return None if value is None else np.array(value, dtype=np.float64).reshape(4, 4)


def _import_collection(obj):
    for collection in obj.users_collection:
        if WORLD_KEY in collection:
            return collection
    return None


def exportable_cameras(objects) -> list:
    """Still cameras among ``objects`` (the animated camera repeats the others, so it is left out)."""
    return [o for o in objects if o.type == "CAMERA" and FRAMES_KEY not in o.data]


def camera_intrinsics(obj, scene) -> Camera:
    """The COLMAP camera of a Blender camera: its own settings if imported, else the scene's render."""
    data = obj.data
    if data.type != "PERSP":
        raise ValueError(f"camera {obj.name!r} is {data.type.lower()}; only perspective cameras export to COLMAP")
    s = data.splatwork_colmap
    r = scene.render
    if s.is_colmap:
        res = (s.resolution_x, s.resolution_y, s.pixel_aspect_x, s.pixel_aspect_y, 100)
    else:
        res = (r.resolution_x, r.resolution_y, r.pixel_aspect_x, r.pixel_aspect_y, r.resolution_percentage)
    fx, fy, cx, cy, w, h = blender_to_intrinsics(data.lens, data.sensor_width, data.sensor_height, data.sensor_fit,
                                                 data.shift_x, data.shift_y, res[0], res[1], res[2], res[3], res[4])
    params = data.get(PARAMS_KEY)
    if s.is_colmap and s.model and params is not None:
        return with_pinhole(s.model, list(params), fx, fy, cx, cy, width=w, height=h)
    return Camera.pinhole(0, w, h, fx, fy, cx, cy)


def camera_to_colmap(obj, scene, world: np.ndarray | None = None) -> tuple[Camera, np.ndarray, np.ndarray]:
    """(intrinsics, R, t) of one Blender camera as it renders now (any camera, the animated one
    included: at the current frame its settings are the scene's). ``camera.K()`` and
    ``x_cam = R @ x + t`` are what a renderer needs; ``world`` maps COLMAP's world to Blender's."""
    R, t = matrix_world_to_pose(np.array(obj.matrix_world), world)
    return camera_intrinsics(obj, scene), R, t


def cameras_to_reconstruction(objects, scene, use_import_transform: bool = True) -> Reconstruction:
    """A reconstruction of these camera objects; identical intrinsics share one COLMAP camera.

    With ``use_import_transform``, cameras of an imported collection go back to COLMAP's world
    (undoing the import's Z-up transform), and that collection's sparse points come along.
    """
    cameras: dict[int, Camera] = {}
    ids: dict[tuple, int] = {}
    views = []
    names = set()
    point_sources = []
    for obj in exportable_cameras(objects):
        cam = camera_intrinsics(obj, scene)
        key = (cam.model, cam.width, cam.height, *cam.params.tolist())
        if key not in ids:
            ids[key] = len(ids) + 1
            cam.id = ids[key]
            cameras[cam.id] = cam
        collection = _import_collection(obj) if use_import_transform else None
        R, t = matrix_world_to_pose(np.array(obj.matrix_world), world_from_colmap(collection))
        name = obj.data.splatwork_colmap.image_name or f"{obj.name}.png"
        if name in names:
            raise ValueError(f"two cameras export to the same image name {name!r}")
        names.add(name)
        views.append(View(len(views) + 1, name, ids[key], R, t))
        if collection is not None and collection not in point_sources:
            point_sources.append(collection)
    if not views:
        raise ValueError("no perspective cameras to export")
    points = [_collection_points(c) for c in point_sources]
    points = [p for p in points if p is not None]
    if not points:
        return Reconstruction(cameras, views)
    return Reconstruction(cameras, views, *(np.concatenate(parts) for parts in zip(*points, strict=True)))


def _collection_points(collection):
    obj = next((o for o in collection.objects if POINTS_KEY in o and o.type == "POINTCLOUD"), None)
    if obj is None:
        return None
    attrs = obj.data.attributes
    n = len(obj.data.points)
    xyz = np.empty(n * 3, np.float32)
    attrs["position"].data.foreach_get("vector", xyz)
    m = np.linalg.inv(world_from_colmap(collection)) @ np.array(obj.matrix_world)
    xyz = xyz.reshape(n, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
    rgba = np.empty(n * 4, np.float32)
    attrs["color"].data.foreach_get("color_srgb", rgba)
    colors = np.clip(np.round(rgba.reshape(n, 4)[:, :3] * 255), 0, 255).astype(np.uint8)
    errors = np.empty(n, np.float32)
    attrs["error"].data.foreach_get("value", errors)
    tracks = np.empty(n, np.int32)
    attrs["track_length"].data.foreach_get("value", tracks)
    return xyz, colors, errors.astype(np.float64), tracks.astype(np.int64)


_SELECTION = [("ALL", "All Cameras", "Every camera in the scene"),
              ("SELECTED", "Selected Cameras", "Only the selected cameras")]


def _objects(context, selection: str):
    return context.selected_objects if selection == "SELECTED" else context.scene.objects


class SPLATWORK_OT_export_colmap(bpy.types.Operator):
    """Export cameras as a COLMAP sparse model (text or binary)"""

    bl_idname = "splatwork.export_colmap"
    bl_label = "Export COLMAP"
    bl_options = {"REGISTER"}

    directory: StringProperty(name="Folder", subtype="DIR_PATH")
    binary: BoolProperty(name="Binary", default=True, description="Binary (.bin) files, else text (.txt)")
    selection: EnumProperty(name="Cameras", items=_SELECTION, default="ALL")
    use_import_transform: BoolProperty(name="Original World", default=True,
                                       description="Undo the Z-up transform of imported cameras")

    def invoke(self, context, _event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        if not self.directory:
            self.report({"ERROR"}, "no output folder given")
            return {"CANCELLED"}
        try:
            rec = cameras_to_reconstruction(_objects(context, self.selection), context.scene, self.use_import_transform)
            colmap.write_model(rec, Path(bpy.path.abspath(self.directory)), binary=self.binary)
        except Exception as exc:  # noqa: BLE001 - operators report, never raise
            self.report({"ERROR"}, f"COLMAP export failed: {failure(exc)}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {len(rec.views)} cameras to {self.directory}")
        return {"FINISHED"}


class SPLATWORK_OT_export_transforms(bpy.types.Operator):
    """Export cameras as a nerfstudio-style transforms.json"""

    bl_idname = "splatwork.export_transforms"
    bl_label = "Export transforms.json"
    bl_options = {"REGISTER"}

    filepath: StringProperty(name="File", subtype="FILE_PATH", default="transforms.json")
    selection: EnumProperty(name="Cameras", items=_SELECTION, default="ALL")
    image_prefix: StringProperty(name="Image Prefix", default="images/",
                                 description="Put before each image name in file_path")

    def invoke(self, context, _event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        try:
            # transforms.json lives in Blender's world: the matrices are the cameras' matrix_world.
            rec = cameras_to_reconstruction(_objects(context, self.selection), context.scene, False)
            transforms_json.write_transforms(path, rec, self.image_prefix)
        except Exception as exc:  # noqa: BLE001 - operators report, never raise
            self.report({"ERROR"}, f"transforms.json export failed: {failure(exc)}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {len(rec.views)} cameras to {path}")
        return {"FINISHED"}


_CLASSES = (SPLATWORK_OT_export_colmap, SPLATWORK_OT_export_transforms)


def register():
    for cls in _CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
