"""The explicit camera type and every camera convention conversion. numpy only.

COLMAP: ``x_cam = R @ x_world + t`` with +x right, +y down, +z forward; pixel (0, 0) is the top-left
*corner* of the image, so the first pixel's centre is (0.5, 0.5).

Blender: a camera object looks down its local -Z with +Y up. Its projection is set by ``lens``,
the sensor size and ``sensor_fit``, ``shift_x``/``shift_y`` (in units of the fitted image side), the
render resolution and the pixel aspect. The formulas below mirror Blender's own view-plane
computation (``BKE_camera_params_compute_viewplane``), which is what makes the two agree to the pixel.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# name -> (COLMAP model id, parameter names), as COLMAP numbers and orders them.
CAMERA_MODELS: dict[str, tuple[int, tuple[str, ...]]] = {
    "SIMPLE_PINHOLE": (0, ("f", "cx", "cy")),
    "PINHOLE": (1, ("fx", "fy", "cx", "cy")),
    "SIMPLE_RADIAL": (2, ("f", "cx", "cy", "k")),
    "RADIAL": (3, ("f", "cx", "cy", "k1", "k2")),
    "OPENCV": (4, ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2")),
    "OPENCV_FISHEYE": (5, ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4")),
    "FULL_OPENCV": (6, ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")),
    "FOV": (7, ("fx", "fy", "cx", "cy", "omega")),
    "SIMPLE_RADIAL_FISHEYE": (8, ("f", "cx", "cy", "k")),
    "RADIAL_FISHEYE": (9, ("f", "cx", "cy", "k1", "k2")),
    "THIN_PRISM_FISHEYE": (10, ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "sx1", "sy1")),
    "RAD_TAN_THIN_PRISM_FISHEYE": (
        11,
        ("fx", "fy", "cx", "cy", "k0", "k1", "k2", "k3", "k4", "k5", "p0", "p1", "s0", "s1", "s2", "s3"),
    ),
    "SIMPLE_DIVISION": (12, ("f", "cx", "cy", "k")),
    "DIVISION": (13, ("fx", "fy", "cx", "cy", "k")),
    "SIMPLE_FISHEYE": (14, ("f", "cx", "cy")),
    "FISHEYE": (15, ("fx", "fy", "cx", "cy")),
    "EUCM": (16, ("fx", "fy", "cx", "cy", "alpha", "beta")),
    "EQUIRECTANGULAR": (17, ("w", "h")),
}
MODEL_NAMES_BY_ID = {model_id: name for name, (model_id, _) in CAMERA_MODELS.items()}
# Models whose projection is a plain pinhole: Blender's camera reproduces them exactly.
PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")

# Blender camera axes expressed in COLMAP camera axes: same x, flipped y and z.
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


@dataclass
class Camera:
    """Intrinsics: a COLMAP camera model and its parameters (float64)."""

    id: int
    model: str
    width: int
    height: int
    params: np.ndarray

    def __post_init__(self) -> None:
        self.params = np.asarray(self.params, dtype=np.float64).reshape(-1)
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"unknown COLMAP camera model {self.model!r}")
        expected = len(CAMERA_MODELS[self.model][1])
        if self.params.size != expected:
            raise ValueError(f"camera {self.id}: {self.model} takes {expected} parameters, got {self.params.size}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera {self.id}: image size {self.width}x{self.height} is not positive")

    @property
    def param_names(self) -> tuple[str, ...]:
        return CAMERA_MODELS[self.model][1]

    def _pinhole(self) -> tuple[float, float, float, float]:
        names = self.param_names
        p = self.params
        if names[:3] == ("f", "cx", "cy"):
            return float(p[0]), float(p[0]), float(p[1]), float(p[2])
        if names[:4] == ("fx", "fy", "cx", "cy"):
            return float(p[0]), float(p[1]), float(p[2]), float(p[3])
        raise ValueError(f"camera {self.id}: the {self.model} model has no pinhole part")

    @property
    def fx(self) -> float:
        return self._pinhole()[0]

    @property
    def fy(self) -> float:
        return self._pinhole()[1]

    @property
    def cx(self) -> float:
        return self._pinhole()[2]

    @property
    def cy(self) -> float:
        return self._pinhole()[3]

    @property
    def distortion(self) -> dict[str, float]:
        """The parameters beyond the pinhole part (empty for pinhole models)."""
        skip = 3 if self.param_names[0] == "f" else 4
        if self.model == "EQUIRECTANGULAR":
            skip = len(self.params)
        return {n: float(v) for n, v in zip(self.param_names[skip:], self.params[skip:], strict=True)}

    def K(self) -> np.ndarray:
        fx, fy, cx, cy = self._pinhole()
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    @classmethod
    def pinhole(cls, id: int, width: int, height: int, fx: float, fy: float, cx: float, cy: float) -> Camera:
        """The simplest exact model for these intrinsics: SIMPLE_PINHOLE when fx == fy, else PINHOLE."""
        if fx == fy:
            return cls(id, "SIMPLE_PINHOLE", width, height, np.array([fx, cx, cy]))
        return cls(id, "PINHOLE", width, height, np.array([fx, fy, cx, cy]))


# Single-focal models and the two-focal model that extends each (same distortion, same order after
# the pinhole part), used when a Blender camera's pixels stop being square.
_TWO_FOCAL = {"SIMPLE_PINHOLE": "PINHOLE", "SIMPLE_RADIAL": "OPENCV", "RADIAL": "OPENCV",
              "SIMPLE_FISHEYE": "FISHEYE", "SIMPLE_DIVISION": "DIVISION",
              "SIMPLE_RADIAL_FISHEYE": "OPENCV_FISHEYE", "RADIAL_FISHEYE": "OPENCV_FISHEYE"}


def with_pinhole(model: str, params, fx: float, fy: float, cx: float, cy: float, *, width: int, height: int,
                 camera_id: int = 1) -> Camera:
    """A camera of ``model`` (distortion from ``params`` kept) with a new pinhole part.

    A single-focal model whose fx and fy now differ becomes its two-focal relative, so the aspect is
    never silently dropped.
    """
    names = CAMERA_MODELS[model][1]
    params = np.asarray(params, dtype=np.float64)
    if names[0] == "f":
        distortion = list(params[3:])
        if abs(fx - fy) <= 1e-9 * max(abs(fx), abs(fy)):
            return Camera(camera_id, model, width, height, np.array([fx, cx, cy, *distortion]))
        if model not in _TWO_FOCAL:
            raise ValueError(f"the {model} model cannot hold fx != fy")
        model = _TWO_FOCAL[model]
        extra = len(CAMERA_MODELS[model][1]) - 4 - len(distortion)
        distortion = distortion + [0.0] * extra
    elif names[:4] == ("fx", "fy", "cx", "cy"):
        distortion = list(params[4:])
    else:
        raise ValueError(f"the {model} model has no pinhole part")
    return Camera(camera_id, model, width, height, np.array([fx, fy, cx, cy, *distortion]))


@dataclass
class View:
    """A registered image; ``x_cam = R @ x_world + t`` (COLMAP: +z forward, +y down)."""

    id: int
    name: str
    camera_id: int
    R: np.ndarray
    t: np.ndarray

    def __post_init__(self) -> None:
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)

    def center(self) -> np.ndarray:
        return -self.R.T @ self.t

    def world_to_camera(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.R
        m[:3, 3] = self.t
        return m


@dataclass
class Reconstruction:
    cameras: dict[int, Camera]
    views: list[View]  # sorted by name
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (M, 3) float64
    colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))  # (M, 3) uint8
    errors: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (M,) reprojection error, px
    track_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (M,)

    def __post_init__(self) -> None:
        self.views = sorted(self.views, key=lambda v: v.name)
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 3)
        m = len(self.points)
        self.colors = np.asarray(self.colors, dtype=np.uint8).reshape(m, 3)
        self.errors = np.asarray(self.errors, dtype=np.float64).reshape(m)
        self.track_lengths = np.asarray(self.track_lengths, dtype=np.int64).reshape(m)


# ---------------------------------------------------------------------------------------------
# Intrinsics <-> Blender camera settings


@dataclass
class BlenderIntrinsics:
    """What a Blender camera plus the scene's render settings need to reproduce a pinhole camera.

    ``sensor_fit`` is explicit (never AUTO) so that changing the resolution later cannot flip it.
    Pixel aspects are >= 1, as Blender requires.
    """

    lens: float  # mm
    sensor_width: float  # mm
    sensor_height: float  # mm
    sensor_fit: str  # "HORIZONTAL" or "VERTICAL"
    shift_x: float
    shift_y: float
    resolution_x: int
    resolution_y: int
    pixel_aspect_x: float
    pixel_aspect_y: float


def intrinsics_to_blender(
    fx: float, fy: float, cx: float, cy: float, width: int, height: int, sensor_mm: float = 36.0,
    sensor_fit: str | None = None,
) -> BlenderIntrinsics:
    """Blender settings whose projection equals the pinhole (fx, fy, cx, cy) at width x height.

    Non-square pixels become a pixel aspect (ycor = aspect_y / aspect_x = fx / fy); the principal
    point becomes the lens shift. The fitted sensor side is ``sensor_mm``. ``sensor_fit`` forces
    "HORIZONTAL" or "VERTICAL" (an animated camera cannot switch fit between frames); by default
    the longer side is fitted, as Blender's AUTO would.
    """
    if not (fx > 0 and fy > 0 and width > 0 and height > 0):
        raise ValueError(f"focal lengths and image size must be positive: fx={fx}, fy={fy}, {width}x{height}")
    ycor = fx / fy
    aspect_x, aspect_y = (1.0, ycor) if ycor >= 1.0 else (1.0 / ycor, 1.0)
    if sensor_fit is None:
        horizontal = aspect_x * width >= aspect_y * height
    elif sensor_fit in ("HORIZONTAL", "VERTICAL"):
        horizontal = sensor_fit == "HORIZONTAL"
    else:
        raise ValueError(f"sensor_fit must be HORIZONTAL or VERTICAL, not {sensor_fit!r}")
    viewfac = width if horizontal else ycor * height
    lens = fx * sensor_mm / viewfac
    # The other sensor side keeps the image's shape, so Blender's UI shows a consistent sensor.
    if horizontal:
        sensor_w, sensor_h = sensor_mm, sensor_mm * (aspect_y * height) / (aspect_x * width)
    else:
        sensor_w, sensor_h = sensor_mm * (aspect_x * width) / (aspect_y * height), sensor_mm
    return BlenderIntrinsics(
        lens=lens,
        sensor_width=sensor_w,
        sensor_height=sensor_h,
        sensor_fit="HORIZONTAL" if horizontal else "VERTICAL",
        shift_x=(0.5 * width - cx) / viewfac,
        shift_y=(cy - 0.5 * height) * ycor / viewfac,
        resolution_x=int(width),
        resolution_y=int(height),
        pixel_aspect_x=aspect_x,
        pixel_aspect_y=aspect_y,
    )


def blender_to_intrinsics(
    lens: float,
    sensor_width: float,
    sensor_height: float,
    sensor_fit: str,
    shift_x: float,
    shift_y: float,
    resolution_x: int,
    resolution_y: int,
    pixel_aspect_x: float = 1.0,
    pixel_aspect_y: float = 1.0,
    resolution_percentage: int = 100,
) -> tuple[float, float, float, float, int, int]:
    """(fx, fy, cx, cy, width, height) of a Blender perspective camera rendered with these settings.

    Works for any sensor fit, AUTO included, resolved exactly as Blender resolves it.
    """
    width = int(resolution_x * resolution_percentage / 100)
    height = int(resolution_y * resolution_percentage / 100)
    if lens <= 0 or width <= 0 or height <= 0 or pixel_aspect_x <= 0 or pixel_aspect_y <= 0:
        raise ValueError(f"not a valid camera: lens={lens}, {width}x{height}, aspect {pixel_aspect_x}:{pixel_aspect_y}")
    ycor = pixel_aspect_y / pixel_aspect_x
    if sensor_fit == "AUTO":
        horizontal = pixel_aspect_x * width >= pixel_aspect_y * height
        sensor = sensor_width
    elif sensor_fit in ("HORIZONTAL", "VERTICAL"):
        horizontal = sensor_fit == "HORIZONTAL"
        sensor = sensor_width if horizontal else sensor_height
    else:
        raise ValueError(f"unknown sensor fit {sensor_fit!r}")
    viewfac = width if horizontal else ycor * height
    fx = lens * viewfac / sensor
    fy = fx / ycor
    cx = 0.5 * width - shift_x * viewfac
    cy = 0.5 * height + shift_y * viewfac / ycor
    return fx, fy, cx, cy, width, height


# ---------------------------------------------------------------------------------------------
# Poses <-> Blender matrix_world


# Coordinates, scales and translations past this are corrupt values, not scenes (a billion metres);
# past it, squares and products overflow into numpy warnings and Inf.
MAX_COORDINATE = 1e9


def matrix_problem(m: np.ndarray) -> str | None:
    """Why a 4x4 object or camera matrix cannot place anything, or None: not finite, beyond
    :data:`MAX_COORDINATE`, projective, or flat (a zero scale)."""
    m = np.asarray(m, np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        return f"must be a finite 4x4 matrix (shape {m.shape})"
    big = float(np.abs(m[:3]).max())
    if big > MAX_COORDINATE:
        return f"holds {big:.3g}, beyond the {MAX_COORDINATE:g} units a scene can span"
    if not np.allclose(m[3], (0.0, 0.0, 0.0, 1.0), atol=1e-9):
        return "has a perspective row; only affine transforms place objects"
    if abs(np.linalg.det(m[:3, :3])) < 1e-12:
        return "has a zero scale"
    return None


def pose_to_matrix_world(R: np.ndarray, t: np.ndarray, world: np.ndarray | None = None) -> np.ndarray:
    """Blender ``matrix_world`` (4x4) of the camera with COLMAP pose (R, t).

    ``world``: an optional rigid 4x4 taking COLMAP world coordinates to Blender's (see
    :func:`up_and_centre_transform`).
    """
    R = np.asarray(R, dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = R.T @ _FLIP_YZ
    m[:3, 3] = -R.T @ np.asarray(t, dtype=np.float64)
    return m if world is None else np.asarray(world, dtype=np.float64) @ m


def matrix_world_to_pose(matrix_world: np.ndarray, world: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """COLMAP (R, t) of a Blender camera. Object scale is ignored, as Blender's own projection ignores it."""
    m = np.asarray(matrix_world, dtype=np.float64)
    if world is not None:
        m = np.linalg.inv(np.asarray(world, dtype=np.float64)) @ m
    problem = matrix_problem(m)
    if problem:
        raise ValueError(f"the camera's matrix {problem}")
    rot = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)
    # Nearest proper rotation: strips shear and float noise so the exported pose is exactly orthonormal.
    u, _, vt = np.linalg.svd(rot)
    rot = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    R = _FLIP_YZ @ rot.T
    t = -R @ m[:3, 3]
    return R, t


def up_and_centre_transform(views: list[View], points: np.ndarray | None = None) -> np.ndarray:
    """A rigid 4x4 that makes the scene Z-up and centred.

    Up is the mean of the cameras' up vectors (photographers hold cameras level); the centre is the
    median of the sparse points (robust to stray points) or, without points, of the camera centres.
    """
    if not views:
        return np.eye(4)
    up = np.sum([-v.R[1] for v in views], axis=0)  # COLMAP +y is down in the image
    norm = np.linalg.norm(up)
    up = up / norm if norm > 1e-12 else np.array([0.0, 0.0, 1.0])
    rot = _rotation_between(up, np.array([0.0, 0.0, 1.0]))
    have_points = points is not None and len(points) > 0
    centre = np.median(points if have_points else np.array([v.center() for v in views]), axis=0)
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = -rot @ centre
    return m


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vector a onto unit vector b."""
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1.0 + 1e-12:  # opposite: turn half a revolution about any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def project(camera: Camera, view: View, points: np.ndarray) -> np.ndarray:
    """Pinhole pixel coordinates (N, 2) of world points; distortion is not applied."""
    x = np.asarray(points, dtype=np.float64) @ view.R.T + view.t
    return (x[:, :2] / x[:, 2:3]) * [camera.fx, camera.fy] + [camera.cx, camera.cy]
