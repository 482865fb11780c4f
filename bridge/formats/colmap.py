"""COLMAP sparse models (binary or text) to and from :class:`~.cameras.Reconstruction`, via pycolmap.

pycolmap aborts the whole process (inside Blender: Blender itself) on some malformed binary files,
for instance a truncated file or a count larger than the file. So every binary file is first walked
here with reads bounded by its real size, and only a structurally sound model reaches pycolmap.
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from .cameras import CAMERA_MODELS, MODEL_NAMES_BY_ID, Camera, Reconstruction, View
from .errors import FormatError


class EmptyModelError(FormatError):
    """A readable model that registered no image: structure-from-motion failed, the file is fine."""


MODEL_FILES = ("cameras", "images", "points3D")
# COLMAP 3.12+ also writes these; older models lack them.
RIG_FILES = ("rigs", "frames")

_U64 = struct.Struct("<Q")
_CAMERA = struct.Struct("<iiQQ")
_IMAGE = struct.Struct("<I7dI")
_RIG = struct.Struct("<II")
_FRAME = struct.Struct("<II7dI")
_SENSOR = struct.Struct("<iI")
_MAX_NAME = 4096
MAX_IMAGE_SIDE = 1 << 20  # pixels; anything larger is a corrupt file, not a photo


def model_format(model_dir: str | os.PathLike) -> str:
    """ "binary" or "text" (binary wins when both are complete, as in COLMAP); FormatError otherwise."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise FormatError(folder, "not a folder (expected a COLMAP sparse model such as sparse/0)")
    for ext, name in ((".bin", "binary"), (".txt", "text")):
        if all((folder / f"{stem}{ext}").is_file() for stem in MODEL_FILES):
            return name
    present = sorted(p.name for p in folder.iterdir() if p.stem in MODEL_FILES + RIG_FILES)
    missing = [f"{stem}.bin/.txt" for stem in MODEL_FILES if not any(p.startswith(stem + ".") for p in present)]
    detail = f"missing {', '.join(missing)}" if missing else f"has a mix of .bin and .txt files: {', '.join(present)}"
    raise FormatError(folder, f"not a COLMAP model: {detail}")


def find_models(folder: str | os.PathLike) -> list[Path]:
    """The model folders at or under ``folder``: itself, ``sparse/N`` or ``N`` children, sorted."""
    root = Path(folder)
    candidates = [root]
    for base in (root, root / "sparse"):
        if base.is_dir():
            candidates += sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name))
    found = []
    for path in candidates:
        try:
            model_format(path)
        except FormatError:
            continue
        found.append(path)
    return found


def resolve_image_path(images_dir: str | os.PathLike, name: str, model: str | os.PathLike | None = None) -> str:
    """The file of the image called ``name`` inside ``images_dir``, as an absolute path.

    Image names come from the model file, so they are untrusted: a name that is absolute, holds a
    NUL, or climbs out with ``..`` raises FormatError (naming ``model``, else ``images_dir``, and the
    name). The check is lexical, so symlinks the user put inside the images folder keep working.
    """
    where = model if model is not None else images_dir
    problem = image_name_problem(name)
    if problem:
        raise FormatError(where, f"image name {name!r} {problem}")
    root = os.path.abspath(os.fspath(images_dir))
    path = os.path.abspath(os.path.join(root, name))
    if os.path.commonpath([root, path]) != root or path == root:
        raise FormatError(where, f"image name {name!r} points outside the images folder {root}")
    return path


def image_name_problem(name: str) -> str | None:
    """Why an image name from a model cannot name a file inside an images folder, or None."""
    if not name:
        return "is empty"
    if "\0" in name:
        return "contains a NUL byte"
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in parts:
        return "climbs out of the images folder with '..'"
    return None


def read_model(model_dir: str | os.PathLike) -> Reconstruction:
    """A COLMAP model (binary or text). FormatError (naming the file and the problem) on bad input."""
    import pycolmap

    folder = Path(model_dir)
    fmt = model_format(folder)
    points = check_binary_model(folder) if fmt == "binary" else None
    if fmt == "text":
        _check_text_poses(folder / "images.txt")
    rec = pycolmap.Reconstruction()
    try:
        (rec.read_binary if fmt == "binary" else rec.read_text)(str(folder))
    except Exception as exc:  # noqa: BLE001 - pycolmap raises ValueError, IndexError, RuntimeError...
        raise FormatError(folder, f"COLMAP {fmt} model cannot be read: {_short(exc)}") from exc
    return _from_pycolmap(rec, folder, ".bin" if fmt == "binary" else ".txt", points)


def _quaternion_problem(q) -> str | None:
    """Why a pose's quaternion is no rotation, or None. pycolmap normalises it on reading, turning a
    zero quaternion (a corrupt or hand-edited file) into the identity without a word."""
    with np.errstate(over="ignore"):
        norm = float(np.sqrt(np.sum(np.square(np.asarray(q, np.float64)))))  # inf past 1e154
    if not np.isfinite(norm):
        return "not finite"
    if norm < 1e-6:
        return "zero length, so no rotation"
    return None


def _check_text_poses(path: Path) -> None:
    """Each image line's quaternion (QW QX QY QZ after IMAGE_ID), read as COLMAP reads the file: an
    image line (comments and empty lines skipped), then its 2D points on the next line, empty or not."""
    with open(path, "rb") as fh:
        lines, number = iter(fh), 0
        for line in lines:
            number += 1
            parts = line.split()
            if not parts or parts[0].startswith(b"#"):
                continue
            try:
                q = [float(v) for v in parts[1:5]]
            except ValueError:
                q = []
            problem = _quaternion_problem(q) if len(q) == 4 else "not four numbers"
            if problem:
                raise FormatError(path, f"line {number}: image {parts[0].decode('utf-8', 'replace')[:40]} has the "
                                  f"rotation quaternion {b' '.join(parts[1:5]).decode('utf-8', 'replace')[:120]}: "
                                  f"{problem}")
            number += next(lines, None) is not None  # its 2D points


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _from_pycolmap(rec, folder: Path, ext: str, points: tuple[np.ndarray, ...] | None) -> Reconstruction:
    cameras = {}
    for cam_id, cam in rec.cameras.items():
        name = cam.model.name
        if name not in CAMERA_MODELS:
            raise FormatError(folder / f"cameras{ext}", f"camera {cam_id} uses the unknown model {name}")
        params = np.array(cam.params, dtype=np.float64)
        sides_ok = 0 < cam.width <= MAX_IMAGE_SIDE and 0 < cam.height <= MAX_IMAGE_SIDE
        if not sides_ok or not np.all(np.isfinite(params)):
            raise FormatError(folder / f"cameras{ext}",
                              f"camera {cam_id} is invalid: {cam.width}x{cam.height}, params {params}")
        camera = Camera(int(cam_id), name, int(cam.width), int(cam.height), params)
        _check_intrinsics(folder / f"cameras{ext}", camera)
        cameras[int(cam_id)] = camera
    views = []
    for image_id, image in rec.images.items():
        if not image.has_pose:
            continue
        try:
            name = image.name
        except UnicodeDecodeError as exc:  # a text model's bytes; binary names are checked earlier
            raise FormatError(folder / f"images{ext}", f"the name of image {image_id} is not UTF-8") from exc
        problem = image_name_problem(name)
        if problem:  # the trainer and the importer open images by these names
            raise FormatError(folder / f"images{ext}", f"image {image_id}: the name {name!r} {problem}")
        pose = image.cam_from_world()
        R = np.array(pose.rotation.matrix(), dtype=np.float64)
        t = np.array(pose.translation, dtype=np.float64)
        if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))):
            raise FormatError(folder, f"image {name} has a non-finite pose")
        views.append(View(int(image_id), name, int(image.camera_id), R, t))
    if not views:
        raise EmptyModelError(folder, "the model has no registered images")
    if points is None:
        points = _points_from_text(folder / "points3D.txt")
    ids, xyz, rgb, errors, tracks = points
    if not np.all(np.isfinite(xyz)):
        raise FormatError(folder, f"{int(np.sum(~np.isfinite(xyz).all(axis=1)))} 3D points have non-finite coordinates")
    order = np.argsort(ids, kind="stable")  # by id, the order writers number points in
    return Reconstruction(cameras, views, xyz[order], rgb[order], errors[order], tracks[order])


# Focal lengths beyond this many times the image's larger side are corrupt values, not lenses: a
# 2,000 mm lens on a full-frame sensor is about 55 times the image side; a fisheye about a quarter.
MAX_FOCAL_PER_SIDE = 1000
MIN_FOCAL_PER_SIDE = 1e-3


def _check_intrinsics(path: Path, camera: Camera) -> None:
    """Focal lengths positive and plausible, principal point finite: anything else trains to garbage."""
    if camera.model == "EQUIRECTANGULAR":  # no pinhole part
        return
    side = max(camera.width, camera.height)
    for what, value in (("fx", camera.fx), ("fy", camera.fy)):
        if not MIN_FOCAL_PER_SIDE * side <= value <= MAX_FOCAL_PER_SIDE * side:
            raise FormatError(path, f"camera {camera.id} has focal length {what} = {value:g} pixels; a "
                              f"{camera.width}x{camera.height} camera needs one in [{MIN_FOCAL_PER_SIDE * side:g}, "
                              f"{MAX_FOCAL_PER_SIDE * side:,}]")
    for what, value in (("cx", camera.cx), ("cy", camera.cy)):
        if not abs(value) <= MAX_FOCAL_PER_SIDE * side:
            raise FormatError(path, f"camera {camera.id} has principal point {what} = {value:g}, "
                              f"far outside its {camera.width}x{camera.height} image")


def _points_from_text(path: Path) -> tuple[np.ndarray, ...]:
    """(ids, xyz, rgb, errors, track_lengths) of a points3D.txt that pycolmap has already accepted.

    Parsed here because reading a million points back through pycolmap's Python objects takes
    tens of seconds. pycolmap is lenient (it takes "1.5abc" as 1.5 and skips bytes it cannot decode in
    comments), so every value is checked again here.
    """
    rows, lengths = [], []
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts or parts[0].startswith(b"#"):
                continue
            if len(parts) < 8:
                raise FormatError(path, f"line {number}: a 3D point needs an id, X Y Z, R G B and an error")
            rows.append(parts[:8])
            lengths.append((len(parts) - 8) // 2)
    try:
        table = np.array(rows, dtype=np.float64).reshape(len(rows), 8)
        ids = np.array([int(r[0]) for r in rows], dtype=np.int64)
    except (ValueError, OverflowError):
        raise FormatError(path, "a 3D point has a value that is not a number, or an id beyond 64 bits") from None
    rgb = table[:, 4:7]
    if not np.all((rgb >= 0) & (rgb <= 255) & (rgb == np.round(rgb))):
        raise FormatError(path, "a 3D point has a colour that is not a whole number from 0 to 255")
    return ids, table[:, 1:4], rgb.astype(np.uint8), table[:, 7], np.array(lengths, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Structural check of binary files


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError(self.path, f"truncated or corrupt: {what} needs {n} bytes at offset {self.pos}, "
                                         f"the file has {len(self.data)}")

    def unpack(self, fmt: struct.Struct, what: str) -> tuple:
        self.need(fmt.size, what)
        values = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return values

    def count(self, what: str, min_item_size: int) -> int:
        (n,) = self.unpack(_U64, f"the number of {what}")
        if n * min_item_size > len(self.data) - self.pos:
            raise FormatError(self.path, f"corrupt or truncated: claims {n} {what}, more than its "
                                         f"{len(self.data)} bytes can hold")
        return n

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n


def check_binary_model(folder: str | os.PathLike) -> tuple[np.ndarray, ...]:
    """Walk cameras/images/points3D(.bin) (and rigs/frames when present) within their sizes.

    Returns the points decoded on the way: (ids, xyz, rgb, errors, track_lengths).

    Checks every count against the bytes left, every camera model id, and every reference between
    the files, so that pycolmap never reads past a buffer or follows a dangling id.
    """
    folder = Path(folder)
    camera_ids = _check_cameras(_Reader(folder / "cameras.bin"))
    image_points = _check_images(_Reader(folder / "images.bin"), camera_ids)
    points = _check_points(_Reader(folder / "points3D.bin"), image_points)
    if (folder / "rigs.bin").is_file():
        _check_rigs(_Reader(folder / "rigs.bin"))
    if (folder / "frames.bin").is_file():
        _check_frames(_Reader(folder / "frames.bin"))
    return points


def _check_cameras(r: _Reader) -> set[int]:
    ids = set()
    for _ in range(r.count("cameras", _CAMERA.size)):
        cam_id, model_id, width, height = r.unpack(_CAMERA, "a camera")
        name = MODEL_NAMES_BY_ID.get(model_id)
        if name is None:
            raise FormatError(r.path, f"corrupt: camera {cam_id} has unknown model id {model_id}")
        if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
            raise FormatError(r.path, f"corrupt: camera {cam_id} has size {width}x{height}")
        r.skip(8 * len(CAMERA_MODELS[name][1]), f"the parameters of camera {cam_id}")
        ids.add(cam_id)
    return ids


def _check_images(r: _Reader, camera_ids: set[int]) -> dict[int, int]:
    points2d = {}
    for _ in range(r.count("images", _IMAGE.size + 1 + 8)):
        values = r.unpack(_IMAGE, "an image")
        image_id, camera_id = values[0], values[8]
        problem = _quaternion_problem(values[1:5])
        if problem:
            raise FormatError(r.path, f"image {image_id} has the rotation quaternion {values[1:5]}: {problem}")
        end = r.data.find(b"\0", r.pos, r.pos + _MAX_NAME)
        if end < 0:
            raise FormatError(r.path, f"corrupt: the name of image {image_id} is not terminated")
        try:
            r.data[r.pos:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(r.path, f"corrupt: the name of image {image_id} is not UTF-8") from exc
        r.pos = end + 1
        if camera_id not in camera_ids:
            raise FormatError(r.path, f"image {image_id} refers to camera {camera_id}, which cameras.bin lacks")
        (n,) = r.unpack(_U64, f"the number of 2D points of image {image_id}")
        if n > (len(r.data) - r.pos) // 24:
            raise FormatError(r.path, f"corrupt: image {image_id} claims {n} 2D points, more than the file holds")
        r.skip(24 * n, f"the 2D points of image {image_id}")
        points2d[image_id] = n
    return points2d


_POINT_FIELDS = np.dtype([("id", "<u8"), ("xyz", "<f8", 3), ("rgb", "u1", 3), ("error", "<f8"),
                          ("track_length", "<u8")])  # packed: 51 bytes, as in the file


def _check_points(r: _Reader, image_points: dict[int, int]) -> tuple[np.ndarray, ...]:
    """Walk points3D.bin; returns (ids, xyz, rgb, errors, track_lengths), decoded on the way.

    The loop only hops from header to header (each track's length says where the next point
    starts); the headers and the track entries are then decoded and checked with numpy at once.
    """
    n = r.count("3D points", _POINT_FIELDS.itemsize)
    data, size, pos = r.data, len(r.data), r.pos
    header = _POINT_FIELDS.itemsize
    length_at = _POINT_FIELDS.fields["track_length"][1]
    read_u64 = _U64.unpack_from
    starts = []
    for i in range(n):
        if pos + header > size:
            raise FormatError(r.path, f"truncated: point {i + 1} of {n} ends past the file's {size} bytes")
        starts.append(pos)
        pos += header + 8 * read_u64(data, pos + length_at)[0]
    if pos > size:
        raise FormatError(r.path, f"truncated: the track of the last point ends past the file's {size} bytes")
    r.pos = pos
    offsets = np.array(starts, dtype=np.int64)
    # Mark the header bytes (+1 where a header starts, -1 where it ends) and keep them: the
    # headers, packed, are exactly the file's record layout.
    marks = np.zeros(size + 1, np.int8)
    marks[offsets] = 1
    marks[offsets + header] -= 1
    raw = np.frombuffer(data, dtype=np.uint8)
    table = raw[np.cumsum(marks[:-1], dtype=np.int8).view(bool)].view(_POINT_FIELDS)
    ids = table["id"].astype(np.int64)
    lengths = table["track_length"].astype(np.int64)
    _check_tracks(r, ids, offsets + header, lengths, image_points)
    return ids, table["xyz"].astype(np.float64), table["rgb"].copy(), table["error"].astype(np.float64), lengths


def _check_tracks(r: _Reader, point_ids, starts, lengths, image_points: dict[int, int]) -> None:
    total = int(lengths.sum())
    if not total:
        return
    first = np.cumsum(lengths) - lengths
    entry = np.repeat(starts, lengths) + 8 * (np.arange(total) - np.repeat(first, lengths))
    raw = np.frombuffer(r.data, dtype=np.uint8)

    def u32(offsets):
        return sum(raw[offsets + k].astype(np.int64) << (8 * k) for k in range(4))

    image_ids, point2d = u32(entry), u32(entry + 4)
    known = np.array(sorted(image_points), dtype=np.int64)
    sizes = np.array([image_points[i] for i in known], dtype=np.int64)
    where = np.minimum(np.searchsorted(known, image_ids), max(len(known) - 1, 0))
    ok = (known[where] == image_ids) & (point2d < sizes[where]) if len(known) else np.zeros(total, bool)
    if not ok.all():
        bad = np.repeat(point_ids, lengths)[np.argmin(ok)]
        raise FormatError(r.path, f"point {bad} has a track entry for an image or 2D point that images.bin lacks")


def _check_rigs(r: _Reader) -> None:
    for _ in range(r.count("rigs", _RIG.size)):
        rig_id, n_sensors = r.unpack(_RIG, "a rig")
        if n_sensors:
            r.unpack(_SENSOR, f"the reference sensor of rig {rig_id}")
            for _ in range(n_sensors - 1):
                r.unpack(_SENSOR, f"a sensor of rig {rig_id}")
                r.need(1, f"a sensor of rig {rig_id}")
                has_pose = r.data[r.pos]
                r.pos += 1
                if has_pose:
                    r.skip(56, f"a sensor pose of rig {rig_id}")


def _check_frames(r: _Reader) -> None:
    for _ in range(r.count("frames", _FRAME.size)):
        values = r.unpack(_FRAME, "a frame")
        r.skip(16 * values[-1], f"the data ids of frame {values[0]}")


# ---------------------------------------------------------------------------------------------
# Writing


def write_model(rec: Reconstruction, out_dir: str | os.PathLike, binary: bool = True) -> None:
    """Write ``rec`` as a COLMAP model; each file lands atomically (temp + rename).

    Files of the other format left in ``out_dir`` are removed, so a reader never sees a stale model.
    Points are written without tracks (Reconstruction holds no 2D observations).
    """
    import pycolmap

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = pycolmap.Reconstruction()
    for cam in rec.cameras.values():
        model.add_camera_with_trivial_rig(
            pycolmap.Camera(camera_id=cam.id, model=cam.model, width=cam.width, height=cam.height,
                            params=list(cam.params))
        )
    for view in rec.views:
        if view.camera_id not in rec.cameras:
            raise ValueError(f"view {view.name} refers to camera {view.camera_id}, which the reconstruction lacks")
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(view.R), view.t)
        model.add_image_with_trivial_frame(pycolmap.Image(name=view.name, camera_id=view.camera_id,
                                                          image_id=view.id), pose)
    ext = ".bin" if binary else ".txt"
    tmp = Path(tempfile.mkdtemp(prefix=".colmap-", dir=out))
    try:
        (model.write_binary if binary else model.write_text)(str(tmp))
        # Points without tracks are plain records: numpy writes a million in a blink, where adding
        # them to pycolmap one by one takes tens of seconds.
        (_write_points_binary if binary else _write_points_text)(tmp / f"points3D{ext}", rec)
        for stem in MODEL_FILES + RIG_FILES:
            if (tmp / f"{stem}{ext}").is_file():
                os.replace(tmp / f"{stem}{ext}", out / f"{stem}{ext}")
        stale = ".txt" if binary else ".bin"
        for stem in MODEL_FILES + RIG_FILES:
            (out / f"{stem}{stale}").unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_points_binary(path: Path, rec: Reconstruction) -> None:
    table = np.zeros(len(rec.points), _POINT_FIELDS)
    table["id"] = np.arange(1, len(rec.points) + 1)
    table["xyz"], table["rgb"], table["error"] = rec.points, rec.colors, rec.errors
    with open(path, "wb") as fh:
        fh.write(_U64.pack(len(table)))
        fh.write(table.tobytes())


def _write_points_text(path: Path, rec: Reconstruction) -> None:
    lines = [
        "# 3D point list with one line of data per point:",
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
        f"# Number of points: {len(rec.points)}, mean track length: 0",
    ]
    lines += [f"{i} {x!r} {y!r} {z!r} {r} {g} {b} {e!r}"
              for i, ((x, y, z), (r, g, b), e) in enumerate(
                  zip(rec.points.tolist(), rec.colors.tolist(), rec.errors.tolist(), strict=True), start=1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def undistort(model_dir: str | os.PathLike, images_dir: str | os.PathLike, out_dir: str | os.PathLike,
              image_names: list[str] | None = None) -> tuple[Path, Path]:
    """Undistort a model's images with pycolmap so that a pinhole camera is exact.

    Returns ``(model_dir, images_dir)`` of the result (``out_dir/sparse``, ``out_dir/images``), whose
    cameras are PINHOLE. The input is checked first, so pycolmap never sees a corrupt model.
    """
    import pycolmap

    model_dir, images_dir, out = Path(model_dir), Path(images_dir), Path(out_dir)
    rec = read_model(model_dir)
    names = image_names if image_names is not None else [v.name for v in rec.views]
    missing = [n for n in names if not os.path.isfile(resolve_image_path(images_dir, n, model=model_dir))]
    if missing:
        raise FormatError(images_dir, f"{len(missing)} image(s) of the model are missing, e.g. {missing[0]}")
    out.mkdir(parents=True, exist_ok=True)
    # pycolmap writes into a scratch folder; the result replaces out/ only when complete.
    tmp = Path(tempfile.mkdtemp(prefix=".undistort-", dir=out))
    try:
        try:
            pycolmap.undistort_images(str(tmp), str(model_dir), str(images_dir), image_names=list(names))
        except Exception as exc:  # noqa: BLE001 - pycolmap's exception types vary by version
            raise FormatError(model_dir, f"undistortion failed: {_short(exc)}") from exc
        for part in tmp.iterdir():
            target = out / part.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(part, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "sparse", out / "images"
