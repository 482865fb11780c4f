"""Cameras and images for training: read the COLMAP model, load, downscale and undistort the images,
split off the held-out views.

Distorted camera models (SIMPLE_RADIAL, OPENCV, ...) are undistorted in memory with pycolmap into
pinhole cameras: the rasterizers are pinhole-only, and training on distorted photos with a pinhole
model blurs everything away from the image centre. Poses are untouched, so the splats stay in the
COLMAP world frame and line up with the cameras imported into Blender (which keep the original model).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..formats import FormatError
from ..formats.cameras import PINHOLE_MODELS
from ..formats.colmap import resolve_image_path
from ..photos import PhotoTooLarge, open_photo
from ..protocol import EXIT_BAD_INPUT, BridgeError
from .job import bad_job


@dataclass
class TrainView:
    name: str
    image: np.ndarray  # (H, W, 3) uint8, already downscaled and undistorted
    K: np.ndarray  # (3, 3) float64 for this image
    world_to_camera: np.ndarray  # (4, 4) float64, COLMAP convention

    @property
    def width(self) -> int:
        return self.image.shape[1]

    @property
    def height(self) -> int:
        return self.image.shape[0]


@dataclass
class Dataset:
    train: list[TrainView]
    test: list[TrainView]
    points: np.ndarray  # (M, 3) float64 SfM points
    colors: np.ndarray  # (M, 3) uint8
    scene_scale: float  # the cameras' spread: scales the position learning rate and the strategies
    scene_center: np.ndarray  # (3,) mean camera centre
    undistorted: bool


def split_indices(count: int, test_every: int) -> tuple[list[int], list[int]]:
    """Train and test indices of views sorted by name: every ``test_every``-th view (0, N, 2N, ...) is held out."""
    if test_every <= 0:
        return list(range(count)), []
    test = [i for i in range(count) if i % test_every == 0]
    train = [i for i in range(count) if i % test_every != 0]
    return train, test


def load_dataset(job, log=None) -> Dataset:
    from ..formats.colmap import EmptyModelError, read_model

    if not os.path.isdir(job.model):
        raise BridgeError("missing_input", f"{job.model}: COLMAP model folder not found",
                          hint="Point 'model' at the folder holding cameras.bin/images.bin/points3D.bin "
                               "(or the .txt versions), e.g. sparse/0.", exit_code=EXIT_BAD_INPUT)
    if not os.path.isdir(job.images):
        raise BridgeError("missing_input", f"{job.images}: images folder not found",
                          hint="Point 'images' at the folder holding the photos the model was built from.",
                          exit_code=EXIT_BAD_INPUT)
    try:
        rec = read_model(job.model)
    except EmptyModelError as exc:
        raise BridgeError("empty_reconstruction", str(exc),
                          hint="Run structure-from-motion again with more overlap between photos.",
                          exit_code=EXIT_BAD_INPUT) from None
    except FormatError as exc:
        raise BridgeError("bad_input", str(exc), hint="Re-export the model from COLMAP.",
                          exit_code=EXIT_BAD_INPUT) from None
    views = rec.views  # sorted by name
    if job.init == "sfm" and len(rec.points) == 0:
        raise BridgeError("empty_reconstruction", f"{job.model}: the reconstruction has no 3D points",
                          hint="Set init to 'random' to start from random splats in the cameras' bounds.",
                          exit_code=EXIT_BAD_INPUT)
    for camera_id in sorted({v.camera_id for v in views}):
        _check_intrinsics(job, rec.cameras[camera_id])
    paths = {v.name: image_path(job, v.name) for v in views}
    missing = [v.name for v in views if not os.path.isfile(paths[v.name])]
    if missing:
        raise BridgeError("missing_input",
                          f"{paths[missing[0]]}: image not found"
                          + (f" (and {len(missing) - 1} more of the model's images)" if len(missing) > 1 else ""),
                          hint="The images folder must hold every image the COLMAP model names.",
                          exit_code=EXIT_BAD_INPUT)
    train_idx, test_idx = split_indices(len(views), job.test_every)
    if not train_idx:
        raise bad_job("test_every", f"{job.test_every} leaves no training image out of {len(views)}",
                      hint="Use 0 (no held-out views) or a larger value.")
    undistorted = any(_distorted(rec.cameras[v.camera_id]) for v in views)
    if undistorted and log is not None:
        models = sorted({rec.cameras[v.camera_id].model for v in views if _distorted(rec.cameras[v.camera_id])})
        log(f"undistorting images of {', '.join(models)} cameras into pinhole cameras for training")
    loaded = _load_views(job, views, rec.cameras, paths)
    centers = np.stack([v.center() for v in views])
    scene_center = centers.mean(axis=0)
    spread = float(np.linalg.norm(centers - scene_center, axis=1).max())
    if spread <= 0.0:  # a single camera, or all at one place: fall back on the points' extent
        pts = np.asarray(rec.points, np.float64)
        spread = float(np.linalg.norm(pts - pts.mean(axis=0), axis=1).max()) if len(pts) else 1.0
    return Dataset(
        train=[loaded[i] for i in train_idx],
        test=[loaded[i] for i in test_idx],
        points=np.asarray(rec.points, np.float64).reshape(-1, 3),
        colors=np.asarray(rec.colors, np.uint8).reshape(-1, 3),
        scene_scale=1.1 * max(spread, 1e-6),  # gsplat's example trainer: 1.1 x the cameras' radius
        scene_center=scene_center,
        undistorted=undistorted,
    )


def image_path(job, name: str) -> str:
    """The file of the model's image ``name`` inside the images folder; names come from the model file,
    so one that is absolute, holds a NUL or climbs out with '..' is refused naming the image and model
    (``bridge.formats.colmap.resolve_image_path``: lexical, so symlinks inside the folder keep working)."""
    try:
        return resolve_image_path(job.images, name, model=job.model)
    except FormatError as exc:
        raise BridgeError("bad_input", f"{exc} ({job.images})",
                          hint="Image names in a COLMAP model are relative to the images folder; fix the model.",
                          exit_code=EXIT_BAD_INPUT) from None


# A focal length over 100 image sizes is a field of view under 0.6 degrees: a broken model, not a lens.
MAX_FOCAL_IN_IMAGE_SIZES = 100.0


def _check_intrinsics(job, camera) -> None:
    """Refuses intrinsics no photo has, before any image is read (they would train into NaN)."""
    size = max(camera.width, camera.height)
    problem = None
    for name, value in (("fx", camera.fx), ("fy", camera.fy)):
        if not (np.isfinite(value) and 0.0 < value <= MAX_FOCAL_IN_IMAGE_SIZES * size):
            problem = f"focal length {name}={value!r} is not between 0 and {MAX_FOCAL_IN_IMAGE_SIZES:g} image sizes"
            break
    else:
        for name, value, extent in (("cx", camera.cx, camera.width), ("cy", camera.cy, camera.height)):
            if not (np.isfinite(value) and -extent <= value <= 2 * extent):
                problem = (f"principal point {name}={value!r} is not within one image size of the "
                           f"{camera.width}x{camera.height} image")
                break
    if problem:
        raise BridgeError("bad_input", f"{job.model}: camera {camera.id} ({camera.model}): {problem}",
                          hint="Calibrate again or fix the camera in the model (cameras.txt / cameras.bin).",
                          exit_code=EXIT_BAD_INPUT)


# Decoding, resizing and undistorting release the GIL (PIL, pycolmap): a thread per core loads the
# photos that many times faster (2.0x on 2 cores for the statue's 40 photos at 800x1200).
MAX_LOAD_THREADS = 8


def _load_views(job, views, cameras, paths) -> list[TrainView]:
    """Every view's photo, in the views' order; the first bad photo in that order is the one reported."""
    workers = max(1, min(len(views), os.cpu_count() or 1, MAX_LOAD_THREADS))
    load = lambda view: _load_view(job, view, cameras[view.camera_id], paths[view.name])  # noqa: E731
    if workers == 1:
        return [load(view) for view in views]
    with ThreadPoolExecutor(workers, thread_name_prefix="load-images") as pool:
        return list(pool.map(load, views))


def _load_view(job, view, camera, path: str) -> TrainView:
    from PIL import Image, UnidentifiedImageError

    try:
        with open_photo(path) as img:
            _check_shape(path, img.size, camera)  # from the header, before anything is decoded
            img.load()
            image = _to_rgb(img, job.background)
    except PhotoTooLarge as exc:
        raise BridgeError("bad_input", str(exc), hint="Reduce the photo (and its COLMAP camera), or leave it out "
                          "of the model.", exit_code=EXIT_BAD_INPUT) from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise BridgeError("bad_input", f"{path}: cannot read the image ({exc})", exit_code=EXIT_BAD_INPUT) from None
    w, h = image.size
    out_w, out_h = job.image_size(camera.width, camera.height)
    if (out_w, out_h) != (w, h):
        image = image.resize((out_w, out_h), Image.BOX)  # area averaging, like cv2.INTER_AREA
    pixels = np.asarray(image, np.uint8)
    if not _distorted(camera):
        K = _scaled_K(camera, out_w, out_h)
    else:
        pixels, K = _undistort(path, pixels, camera, out_w, out_h)
    return TrainView(name=view.name, image=np.array(pixels, np.uint8, order="C"), K=K,  # owned, writable
                     world_to_camera=np.asarray(view.world_to_camera(), np.float64))


def _check_shape(path: str, size: tuple[int, int], camera) -> None:
    """Photos are sometimes resized after SfM: any size with the camera's aspect ratio will do."""
    w, h = size
    if abs(w * camera.height - h * camera.width) > max(w, h, camera.width, camera.height):
        raise BridgeError("bad_input", f"{path}: the image is {w}x{h} but its COLMAP camera {camera.id} is "
                          f"{camera.width}x{camera.height} (a different aspect ratio)",
                          hint="Use the images the model was reconstructed from.", exit_code=EXIT_BAD_INPUT)


def _distorted(camera) -> bool:
    return camera.model not in PINHOLE_MODELS and any(v != 0.0 for v in camera.distortion.values())


def _to_rgb(img, background):
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, tuple(round(255 * c) for c in background) + (255,))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")


def _scaled_K(camera, width: int, height: int) -> np.ndarray:
    # COLMAP's pixel (0, 0) covers [0, 1]^2, so intrinsics scale exactly with the image.
    sx, sy = width / camera.width, height / camera.height
    return np.array([[camera.fx * sx, 0.0, camera.cx * sx], [0.0, camera.fy * sy, camera.cy * sy], [0, 0, 1]])


def _undistort(path: str, pixels: np.ndarray, camera, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    import pycolmap

    try:
        cam = pycolmap.Camera(model=camera.model, width=camera.width, height=camera.height,
                              params=np.asarray(camera.params, np.float64))
        cam.rescale(width, height)
        bitmap, pinhole = pycolmap.undistort_image(
            pycolmap.UndistortCameraOptions(), pycolmap.Bitmap.from_array(pixels), cam)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise BridgeError("bad_input", f"{path}: cannot undistort for COLMAP camera model {camera.model} ({exc})",
                          hint="Undistort the images with COLMAP (image_undistorter) and train on that model.",
                          exit_code=EXIT_BAD_INPUT) from None
    fx, fy, cx, cy = (pinhole.params if pinhole.model.name == "PINHOLE"
                      else (pinhole.params[0], pinhole.params[0], pinhole.params[1], pinhole.params[2]))
    out = bitmap.to_array()
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return out[:, :, :3], np.array([[fx, 0.0, cx], [0.0, fy, cy], [0, 0, 1]], np.float64)
