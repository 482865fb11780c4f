"""nerfstudio / instant-ngp style ``transforms.json`` to and from :class:`~.cameras.Reconstruction`.

``transform_matrix`` is camera-to-world in the OpenGL camera convention (+x right, +y up, looking
down -z), which is Blender's camera convention, so a Blender ``matrix_world`` goes in unchanged.
Intrinsics are per frame (``fl_x, fl_y, cx, cy, w, h``), hoisted to the top level when every frame
shares them. Distortion uses nerfstudio's OPENCV / OPENCV_FISHEYE names; other models keep only
their pinhole part, which the ``camera_model`` field then says.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .cameras import Camera, Reconstruction, View, matrix_world_to_pose, pose_to_matrix_world
from .errors import FormatError

_INTRINSICS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
_DISTORTION = ("k1", "k2", "k3", "k4", "p1", "p2")


def _frame_intrinsics(cam: Camera) -> dict:
    out = {"fl_x": cam.fx, "fl_y": cam.fy, "cx": cam.cx, "cy": cam.cy, "w": cam.width, "h": cam.height}
    dist = cam.distortion
    if cam.model in ("OPENCV_FISHEYE", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"):
        out["camera_model"] = "OPENCV_FISHEYE"
        out.update({k: dist.get(k, 0.0) for k in ("k1", "k2", "k3", "k4")})
        if "k" in dist:
            out["k1"] = dist["k"]
    elif cam.model in ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV"):
        out["camera_model"] = "OPENCV"
        out.update({k: dist.get(k, 0.0) for k in ("k1", "k2", "p1", "p2")})
        if "k" in dist:
            out["k1"] = dist["k"]
    else:
        out["camera_model"] = "OPENCV"  # the pinhole part only
    return out


def write_transforms(path: str | os.PathLike, rec: Reconstruction, image_prefix: str = "images/",
                     world: np.ndarray | None = None) -> None:
    """Write ``rec`` as transforms.json; ``image_prefix`` goes before each view name in ``file_path``."""
    frames = []
    for view in rec.views:
        frame = {"file_path": image_prefix + view.name, **_frame_intrinsics(rec.cameras[view.camera_id])}
        frame["transform_matrix"] = pose_to_matrix_world(view.R, view.t, world).tolist()
        frames.append(frame)
    doc: dict = {}
    shared = [k for k in (*_INTRINSICS, "camera_model", *_DISTORTION)
              if frames and all(k in f and f[k] == frames[0][k] for f in frames)]
    for key in shared:
        doc[key] = frames[0][key]
        for f in frames:
            del f[key]
    if world is not None:
        doc["applied_transform"] = np.asarray(world)[:3].tolist()
    doc["frames"] = frames
    with atomic_write(path) as fh:
        fh.write(json.dumps(doc, indent=2).encode("utf-8"))


def read_transforms(path: str | os.PathLike) -> Reconstruction:
    """The cameras of a transforms.json (pinhole part plus OPENCV distortion). FormatError on bad input."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        frames = doc["frames"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FormatError(path, f"not a transforms.json: {exc}") from exc
    if not isinstance(frames, list) or not frames:
        raise FormatError(path, "has no frames")
    world = None
    if "applied_transform" in doc:
        world = np.vstack([np.asarray(doc["applied_transform"], dtype=np.float64), [0, 0, 0, 1]])
    cameras: dict[int, Camera] = {}
    keys: dict[tuple, int] = {}
    views = []
    for i, frame in enumerate(frames):
        merged = {**doc, **frame}
        try:
            fx, fy, cx, cy = (float(merged[k]) for k in ("fl_x", "fl_y", "cx", "cy"))
            w, h = int(merged["w"]), int(merged["h"])
            matrix = np.asarray(frame["transform_matrix"], dtype=np.float64).reshape(4, 4)
            name = str(frame["file_path"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(path, f"frame {i} lacks or has a bad {exc}") from exc
        fisheye = merged.get("camera_model", "OPENCV") == "OPENCV_FISHEYE"
        names = ("k1", "k2", "k3", "k4") if fisheye else ("k1", "k2", "p1", "p2")
        dist = [float(merged.get(k, 0.0)) for k in names]
        if fisheye:
            model, params = "OPENCV_FISHEYE", [fx, fy, cx, cy, *dist]
        elif any(dist):
            model, params = "OPENCV", [fx, fy, cx, cy, *dist]
        else:
            model, params = "PINHOLE", [fx, fy, cx, cy]
        key = (model, w, h, *params)
        if key not in keys:
            keys[key] = len(keys) + 1
            try:
                cameras[keys[key]] = Camera(keys[key], model, w, h, np.array(params))
            except ValueError as exc:
                raise FormatError(path, f"frame {i}: {exc}") from exc
        try:
            R, t = matrix_world_to_pose(matrix, world)
        except ValueError as exc:  # 1e300, or a flat or projective matrix
            raise FormatError(path, f"frame {i}: {exc}") from None
        views.append(View(i + 1, name, keys[key], R, t))
    return Reconstruction(cameras, views)
