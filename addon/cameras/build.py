"""A COLMAP reconstruction turned into one Blender collection: cameras, sparse points, animated camera.

Everything is built inside a collection that no scene links yet, and every data-block made is
recorded; on any failure they are all removed, so the user's file gets the whole collection or
nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ...bridge.formats.cameras import Reconstruction, intrinsics_to_blender, pose_to_matrix_world
from ...bridge.formats.colmap import resolve_image_path
from ...bridge.formats.errors import FormatError
from ..common.pointclouds import convert_to_pointcloud
from .images import image_size
from .keys import FRAME_START_KEY, FRAMES_KEY, MODEL_DIR_KEY, PARAMS_KEY, POINTS_KEY, WORLD_KEY

BLENDER_MAX_RESOLUTION = 65536
# Blender's enum values for keyframe interpolation, as foreach_set wants them.
_CONSTANT, _LINEAR = 0, 1


@dataclass
class ImportOptions:
    images_dir: Path | None = None  # None: no backgrounds, no image checks
    backgrounds: bool = True
    points: bool = True
    animated_camera: bool = True
    world: np.ndarray | None = None  # 4x4 rigid, COLMAP world -> Blender world
    frame_start: int = 1


class CreatedData:
    """Every data-block made so far, so that all of them can be removed together (in reverse)."""

    def __init__(self):
        self.items: list = []

    def add(self, datablock):
        self.items.append(datablock)
        return datablock

    def remove_all(self) -> None:
        for item in reversed(self.items):
            try:
                getattr(bpy.data, _DATA_COLLECTIONS[type(item).__name__]).remove(item)
            except ReferenceError:  # already gone (a temporary removed on the way)
                pass
        self.items.clear()


_DATA_COLLECTIONS = {"Object": "objects", "Camera": "cameras", "Image": "images", "Collection": "collections",
                     "Mesh": "meshes", "PointCloud": "pointclouds", "Material": "materials", "Action": "actions",
                     "Scene": "scenes", "World": "worlds"}


def check_images(rec: Reconstruction, images_dir: Path) -> dict[str, Path]:
    """The image file of every view, checked to exist and to have the size its camera says."""
    if not images_dir.is_dir():
        raise FormatError(images_dir, "the images folder does not exist")
    paths = {}
    missing = []
    for view in rec.views:
        path = Path(resolve_image_path(images_dir, view.name))  # a name from the file: never outside the folder
        if not path.is_file():
            missing.append(view.name)
            continue
        size = image_size(path)
        cam = rec.cameras[view.camera_id]
        if size is not None and size != (cam.width, cam.height):
            raise FormatError(path, f"is {size[0]}x{size[1]} but the model's camera {cam.id} is "
                                    f"{cam.width}x{cam.height}")
        paths[view.name] = path
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise FormatError(images_dir, f"{len(missing)} image(s) of the model are missing: {missing[0]}{more}")
    return paths


def build_collection(rec: Reconstruction, name: str, scene, options: ImportOptions, model_dir: Path):
    """The complete collection, linked to ``scene`` only once everything in it exists."""
    for view in rec.views:
        if view.camera_id not in rec.cameras:
            raise FormatError(model_dir, f"image {view.name} refers to camera {view.camera_id}, which the model lacks")
    for cam in rec.cameras.values():
        if max(cam.width, cam.height) > BLENDER_MAX_RESOLUTION:
            raise FormatError(model_dir, f"camera {cam.id} is {cam.width}x{cam.height}; Blender renders at most "
                                         f"{BLENDER_MAX_RESOLUTION} px a side")
        if cam.model == "EQUIRECTANGULAR":
            raise FormatError(model_dir, f"camera {cam.id} is EQUIRECTANGULAR; only perspective models import")
    paths = check_images(rec, options.images_dir) if options.images_dir is not None else {}
    created = CreatedData()
    try:
        collection = created.add(bpy.data.collections.new(name))
        world = np.eye(4) if options.world is None else np.asarray(options.world, dtype=np.float64)
        collection[WORLD_KEY] = world.reshape(-1).tolist()
        collection[MODEL_DIR_KEY] = str(model_dir)
        size = _display_size(rec)
        images = _ImageCache(created)
        cameras = [_camera_object(rec, view, world, size, paths.get(view.name) if options.backgrounds else None,
                                  collection, created, images) for view in rec.views]
        if options.points and len(rec.points):
            _points_object(rec, f"{name} points", world, collection, scene, created)
        if options.animated_camera and len(rec.views) > 1:
            _animated_camera(rec, f"{name} animated", world, size, options.frame_start, collection, created)
        scene.collection.children.link(collection)
    except BaseException:
        created.remove_all()
        raise
    return collection, cameras


def _display_size(rec: Reconstruction) -> float:
    centres = np.array([v.center() for v in rec.views])
    extent = float(np.linalg.norm(centres.max(axis=0) - centres.min(axis=0))) if len(centres) > 1 else 1.0
    return max(extent * 0.03, 1e-3)


def _set_intrinsics(data, b) -> None:
    data.type = "PERSP"
    data.lens_unit = "MILLIMETERS"
    data.sensor_fit = b.sensor_fit
    data.sensor_width, data.sensor_height = b.sensor_width, b.sensor_height
    data.lens = b.lens
    data.shift_x, data.shift_y = b.shift_x, b.shift_y


class _ImageCache:
    """Images by absolute path: reuses those already in the file (``images.load(check_existing=True)``
    scans every image on each call, quadratic over a thousand photos)."""

    def __init__(self, created: CreatedData):
        self.created = created
        self.by_path = {Path(bpy.path.abspath(img.filepath)).resolve(): img
                        for img in bpy.data.images if img.source == "FILE" and img.filepath}

    def get(self, path: Path):
        key = path.resolve()
        image = self.by_path.get(key)
        if image is None:
            image = self.created.add(bpy.data.images.load(str(path), check_existing=False))
            self.by_path[key] = image
        return image


def _camera_object(rec, view, world, size, image_path, collection, created, images):
    cam = rec.cameras[view.camera_id]
    b = intrinsics_to_blender(cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height)
    data = created.add(bpy.data.cameras.new(view.name))
    _set_intrinsics(data, b)
    data.display_size = size
    s = data.splatwork_colmap
    s.is_colmap = True
    s.resolution_x, s.resolution_y = b.resolution_x, b.resolution_y
    s.pixel_aspect_x, s.pixel_aspect_y = b.pixel_aspect_x, b.pixel_aspect_y
    s.model, s.camera_id, s.image_id, s.image_name = cam.model, cam.id, view.id, view.name
    data[PARAMS_KEY] = cam.params.tolist()
    if image_path is not None:
        bg = data.background_images.new()
        bg.image = images.get(image_path)
        bg.frame_method = "STRETCH"  # the camera frame already has the image's exact shape
        bg.alpha = 1.0
        data.show_background_images = True
    obj = created.add(bpy.data.objects.new(view.name, data))
    obj.matrix_world = Matrix(pose_to_matrix_world(view.R, view.t, world).tolist())
    collection.objects.link(obj)
    return obj


def _points_object(rec, name, world, collection, scene, created):
    """A point cloud of the sparse points with ``color``, ``track_length`` and ``error`` attributes.

    Blender 5.0's Python API cannot size a point cloud, so the points go into a mesh's vertices and
    Blender's converter makes the point cloud.
    """
    n = len(rec.points)
    points = rec.points @ world[:3, :3].T + world[:3, 3]
    mesh = created.add(bpy.data.meshes.new(name))
    mesh.vertices.add(n)
    mesh.vertices.foreach_set("co", points.astype(np.float32).reshape(-1))
    holder = created.add(bpy.data.objects.new(name, mesh))
    scene.collection.objects.link(holder)
    try:
        pc = created.add(convert_to_pointcloud(holder, scene))
    finally:
        scene.collection.objects.unlink(holder)
        if mesh.users == 0:
            bpy.data.meshes.remove(mesh)
    attrs = pc.attributes
    rgba = np.ones((n, 4), np.float32)
    rgba[:, :3] = rec.colors / 255.0
    attrs.new("color", "FLOAT_COLOR", "POINT").data.foreach_set("color_srgb", rgba.reshape(-1))
    attrs.new("track_length", "INT", "POINT").data.foreach_set("value", rec.track_lengths.astype(np.int32))
    attrs.new("error", "FLOAT", "POINT").data.foreach_set("value", rec.errors.astype(np.float32))
    radius = attrs.get("radius") or attrs.new("radius", "FLOAT", "POINT")
    radius.data.foreach_set("value", np.full(n, _display_size(rec) * 0.05, np.float32))
    pc.materials.append(_points_material(created))
    holder[POINTS_KEY] = True
    collection.objects.link(holder)
    return holder


def _points_material(created):
    mat = created.add(bpy.data.materials.new("Splatwork COLMAP points"))
    if mat.node_tree is None:  # Blender < 5.0 makes materials without nodes
        mat.use_nodes = True
    nodes = mat.node_tree.nodes
    attr = nodes.new("ShaderNodeAttribute")
    attr.attribute_name = "color"
    emission = nodes.new("ShaderNodeEmission")
    mat.node_tree.links.new(attr.outputs["Color"], emission.inputs["Color"])
    output = next(n for n in nodes if n.type == "OUTPUT_MATERIAL")
    mat.node_tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return mat


def _animated_camera(rec, name, world, size, frame_start, collection, created):
    """One camera through every view, a view per frame, rotations kept continuous for scrubbing."""
    n = len(rec.views)
    frames = np.arange(frame_start, frame_start + n, dtype=np.float64)
    locations = np.empty((n, 3))
    quats = np.empty((n, 4))
    lens = np.empty((n, 5))
    table = []
    for i, view in enumerate(rec.views):
        m = Matrix(pose_to_matrix_world(view.R, view.t, world).tolist())
        locations[i] = m.translation
        q = np.array(m.to_quaternion())
        if i and np.dot(q, quats[i - 1]) < 0:  # the same rotation, on the near side of the sphere
            q = -q
        quats[i] = q
        cam = rec.cameras[view.camera_id]
        b = intrinsics_to_blender(cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height, sensor_fit="HORIZONTAL")
        lens[i] = b.lens, b.shift_x, b.shift_y, b.sensor_width, b.sensor_height
        table += [b.resolution_x, b.resolution_y, b.pixel_aspect_x, b.pixel_aspect_y]
    data = created.add(bpy.data.cameras.new(name))
    data.sensor_fit = "HORIZONTAL"
    data.display_size = size
    data[FRAMES_KEY] = table
    data[FRAME_START_KEY] = frame_start
    obj = created.add(bpy.data.objects.new(name, data))
    obj.rotation_mode = "QUATERNION"
    obj.location = locations[0]
    obj.rotation_quaternion = quats[0]
    _set_intrinsics(data, intrinsics_to_blender(*_first_pinhole(rec), sensor_fit="HORIZONTAL"))
    _keyframes(obj, f"{name} motion", created, frames, [("location", locations), ("rotation_quaternion", quats)],
               _LINEAR)
    _keyframes(data, f"{name} lens", created, frames,
               [("lens", lens[:, :1]), ("shift_x", lens[:, 1:2]), ("shift_y", lens[:, 2:3]),
                ("sensor_width", lens[:, 3:4]), ("sensor_height", lens[:, 4:5])], _CONSTANT)
    collection.objects.link(obj)
    return obj


def _first_pinhole(rec):
    cam = rec.cameras[rec.views[0].camera_id]
    return cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height


def _keyframes(datablock, action_name, created, frames, channels, interpolation) -> None:
    action = created.add(bpy.data.actions.new(action_name))
    datablock.animation_data_create().action = action
    n = len(frames)
    for path, values in channels:
        for index in range(values.shape[1]):
            curve = action.fcurve_ensure_for_datablock(datablock, path, index=index)
            curve.keyframe_points.add(n)
            curve.keyframe_points.foreach_set("co", np.column_stack([frames, values[:, index]]).reshape(-1))
            curve.keyframe_points.foreach_set("interpolation", np.full(n, interpolation, np.int32))
            curve.update()
