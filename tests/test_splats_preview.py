"""Splats on screen: on Blender 5.3+ native Gaussian splats with Splatwork's controls, on 5.0-5.2 the
geometry-nodes quad preview (quad shapes against the 3DGS projection, its controls); on each, renders
of a real trained model against the bridge's reference rasterizer."""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time

import bpy
import numpy as np
import pytest
from conftest import compat, reference_render, shared_data
from mathutils import Vector

from bridge.formats.cameras import blender_to_intrinsics, matrix_world_to_pose
from bridge.formats.transform import quat_to_matrix, sh_basis

WIDTH, HEIGHT = 160, 120
NATIVE = compat.NATIVE_SPLATS
quads_only = pytest.mark.skipif(NATIVE, reason="Blender 5.3+ draws native splats; the quad preview serves 5.0-5.2")
native_only = pytest.mark.skipif(not NATIVE, reason="native Gaussian splats need Blender 5.3+")


def _camera(scene, location, target, lens=35.0):
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    cam.data.lens = lens
    scene.camera = cam
    _aim(cam, location, target)
    return cam


def _aim(cam, location, target):
    cam.location = Vector(location)
    cam.rotation_euler = (Vector(target) - cam.location).to_track_quat("-Z", "Y").to_euler()
    bpy.context.view_layer.update()


def _pinhole(cam):
    """K and the OpenCV world-to-camera matrix of a Blender camera at the test resolution."""
    d = cam.data
    fx, fy, cx, cy, _, _ = blender_to_intrinsics(d.lens, d.sensor_width, d.sensor_height, d.sensor_fit,
                                                 d.shift_x, d.shift_y, WIDTH, HEIGHT)
    rot, t = matrix_world_to_pose(np.array(cam.matrix_world))
    view = np.eye(4)
    view[:3, :3], view[:3, 3] = rot, t
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]), view


def _set_input(obj, name, value):
    import importlib

    compat = importlib.import_module("bl_ext.user_default.splatwork.addon.common.compat")
    splats = importlib.import_module("bl_ext.user_default.splatwork.addon.splats")
    compat.set_modifier_input(splats.splat_modifier(obj), name, value)
    obj.update_tag()


def _evaluated(obj):
    """(geometry set, mesh or None); the geometry set must stay referenced while its mesh is read."""
    geometry = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).evaluated_geometry()
    return geometry, geometry.mesh


def _read(attributes, name, width):
    out = np.empty(len(attributes[name].data) * width, np.float32)
    attributes[name].data.foreach_get("vector" if width == 3 else "value", out)
    return out.reshape(-1, width)


def _few_splats(formats, n=6, alpha=0.05):
    rng = np.random.default_rng(7)
    f = np.float32
    logit = np.log(alpha / (1 - alpha))
    return formats.SplatSet(
        means=rng.uniform(-0.6, 0.6, (n, 3)).astype(f),
        scales=np.log(rng.uniform(0.01, 0.08, (n, 3))).astype(f),
        quats=rng.normal(size=(n, 4)).astype(f),
        opacities=np.full(n, logit, f),
        sh_dc=rng.normal(size=(n, 3)).astype(f),
        sh_rest=np.zeros((n, 0, 3), f),
    )


def _project(points, K, view, ortho):
    """Pixel coordinates (OpenCV: y down) of world points."""
    cam = points @ view[:3, :3].T + view[:3, 3]
    if ortho:
        return cam[:, :2] * [K[0, 0], K[1, 1]] + K[:2, 2]
    pix = cam @ K.T
    return pix[:, :2] / pix[:, 2:]


def _cov2d(splats, K, view, ortho):
    """The 3DGS screen-space covariance (with its 0.3 px dilation) of every splat, in pixels."""
    cam = (splats.means @ view[:3, :3].T) + view[:3, 3]
    x, y, z = cam[:, 0], cam[:, 1], np.ones(len(cam)) if ortho else cam[:, 2]
    fx, fy = K[0, 0], K[1, 1]
    zero = np.zeros_like(z)
    persp = 0.0 if ortho else 1.0
    jac = np.stack([np.stack([fx / z, zero, -persp * fx * x / z**2], -1),
                    np.stack([zero, fy / z, -persp * fy * y / z**2], -1)], -2)
    axes = quat_to_matrix(splats.quats.astype(np.float64)) * np.exp(splats.scales.astype(np.float64))[:, None, :]
    world = axes @ np.swapaxes(axes, 1, 2)
    full = jac @ view[:3, :3] @ world @ view[:3, :3].T @ np.swapaxes(jac, 1, 2)
    return full + 0.3 * np.eye(2)


@quads_only
@pytest.mark.parametrize("ortho", [False, True], ids=["perspective", "orthographic"])
def test_each_quad_is_the_3dgs_screen_space_ellipse(blender_with_splatwork, splatwork, ortho):
    api = splatwork.addon.splats
    splats = _few_splats(splatwork.bridge.formats)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = WIDTH, HEIGHT
    obj = api.splats_to_object(splats, "few")
    api.attach_preview(obj)
    cam = _camera(scene, (0.4, -3.0, 0.8), (0, 0, 0), lens=50)
    K, view = _pinhole(cam)
    if ortho:
        cam.data.type = "ORTHO"
        cam.data.ortho_scale = 2.0
        K[0, 0] = K[1, 1] = WIDTH / cam.data.ortho_scale  # the sensor fits the wider side
        bpy.context.view_layer.update()
    want = _cov2d(splats, K, view, ortho)

    geometry, mesh = _evaluated(obj)
    corners = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.attributes["position"].data.foreach_get("vector", corners)
    corners = corners.reshape(-1, 4, 3).astype(np.float64)
    uv = _read(mesh.attributes, "splat_uv", 3).reshape(-1, 4, 3)[..., :2]
    falloff = _read(mesh.attributes, "splat_falloff", 3).reshape(-1, 4, 3)[:, 0]
    assert len(corners) == len(splats)
    reach = 2 * np.log(255 * 0.05)  # Mahalanobis^2 where alpha * exp(-r^2/2) reaches 1/255
    np.testing.assert_allclose(falloff, np.tile([reach / 2, reach / 2, 0.05], (len(splats), 1)), rtol=1e-5)

    centres = _project(splats.means.astype(np.float64), K, view, ortho)
    for quad, quad_uv in zip(corners, uv, strict=True):
        pix = _project(quad, K, view, ortho)
        # pix = centre + u * e1 + v * e2, exactly, because the quad lies parallel to the image.
        basis, *_ = np.linalg.lstsq(np.c_[quad_uv, np.ones(4)], pix, rcond=None)
        i = int(np.argmin(np.linalg.norm(centres - basis[2], axis=1)))
        np.testing.assert_allclose(basis[2], centres[i], atol=1e-3)
        axes = basis[:2].T
        np.testing.assert_allclose(axes @ axes.T / reach, want[i], rtol=2e-3, atol=1e-4)
    # Far to near: the draw order EEVEE blends in.
    depths = (corners.mean(1) @ view[:3, :3].T + view[:3, 3])[:, 2]
    assert np.all(np.diff(depths) <= 1e-6)


@quads_only
@pytest.mark.parametrize("degree", [0, 1, 3])
def test_colour_is_the_view_dependent_sh_up_to_the_chosen_degree(blender_with_splatwork, splatwork, degree):
    api = splatwork.addon.splats
    formats = splatwork.bridge.formats
    rng = np.random.default_rng(3)
    splats = _few_splats(formats, n=8, alpha=0.5).with_sh_degree(3)
    splats.sh_dc[:] = rng.normal(0, 0.5, splats.sh_dc.shape)
    splats.sh_rest[:] = rng.normal(0, 0.3, splats.sh_rest.shape)
    obj = api.splats_to_object(splats, "coloured")
    api.attach_preview(obj)
    _set_input(obj, "SH Degree", degree)
    _set_input(obj, "Fast Points", True)  # one colour per point, in the original order
    cam = _camera(bpy.context.scene, (0.5, -3, 1), (0, 0, 0))
    geometry, _ = _evaluated(obj)
    got = _read(geometry.pointcloud.attributes, "splat_color", 3)

    dirs = splats.means - np.array(cam.location)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    srgb = 0.5 + 0.28209479177387814 * splats.sh_dc
    srgb += np.einsum("nk,nkc->nc", sh_basis(dirs, degree), splats.sh_rest[:, :(degree + 1) ** 2 - 1])
    srgb = np.maximum(srgb, 0.0)
    linear = np.where(srgb > 0.04045, ((srgb + 0.055) / 1.055) ** 2.4, srgb / 12.92)
    np.testing.assert_allclose(got, linear, rtol=1e-4, atol=1e-5)
    _set_input(obj, "Trainer Blending", True)
    geometry, _ = _evaluated(obj)
    np.testing.assert_allclose(_read(geometry.pointcloud.attributes, "splat_color", 3), srgb, rtol=1e-4, atol=1e-5)


@quads_only
def test_modifier_controls(blender_with_splatwork, splatwork):
    api = splatwork.addon.splats
    formats = splatwork.bridge.formats
    splats = _few_splats(formats, n=400, alpha=0.5)
    splats.opacities[:200] = -3.0  # alpha 0.047
    obj = api.splats_to_object(splats, "controls")
    api.attach_preview(obj)
    _camera(bpy.context.scene, (0, -4, 0), (0, 0, 0))

    def quads():
        geometry, mesh = _evaluated(obj)
        return 0 if mesh is None else len(mesh.vertices) // 4

    assert quads() == 400
    _set_input(obj, "Opacity Threshold", 0.1)
    assert quads() == 200
    _set_input(obj, "Opacity Threshold", 0.0)

    box = bpy.data.objects.new("box", None)  # a cube empty's local [-1, 1]^3 is what it draws
    box.empty_display_type = "CUBE"
    box.scale = (0.5, 0.5, 0.5)
    bpy.context.scene.collection.objects.link(box)
    _set_input(obj, "Crop Box", box)
    inside = np.all(np.abs(splats.means) <= 0.5, axis=1).sum()
    assert quads() == inside
    _set_input(obj, "Crop Box", None)

    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.splatwork.add_crop_box() == {"FINISHED"}  # around every splat: all stay
    assert quads() == 400
    crop = bpy.data.objects["controls Crop Box"]
    crop.scale = [s / 2 for s in crop.scale]
    assert 0 < quads() < 400
    _set_input(obj, "Crop Box", None)

    _set_input(obj, "Display Ratio", 0.25)  # the test depsgraph is a viewport one
    assert 50 < quads() < 150
    _set_input(obj, "Display Ratio", 1.0)

    geometry, mesh = _evaluated(obj)
    width = np.ptp(np.asarray([v.co[:] for v in mesh.vertices[:4]]), axis=0).max()
    _set_input(obj, "Scale Multiplier", 2.0)
    geometry, mesh = _evaluated(obj)
    assert np.ptp(np.asarray([v.co[:] for v in mesh.vertices[:4]]), axis=0).max() > 1.5 * width
    _set_input(obj, "Fast Points", True)
    geometry, _ = _evaluated(obj)
    assert geometry.mesh is None and len(geometry.pointcloud.points) == 400
    assert {"splat_color", "splat_falloff"} <= set(geometry.pointcloud.attributes.keys())
    _set_input(obj, "Fast Points", False)
    bpy.context.scene.camera = None  # no camera to face: points instead of quads, nothing culled
    geometry, _ = _evaluated(obj)
    assert geometry.mesh is None and len(geometry.pointcloud.points) == 400


@native_only
def test_native_controls_keep_a_gaussian_splat(blender_with_splatwork, splatwork):
    api = splatwork.addon.splats
    formats = splatwork.bridge.formats
    splats = _few_splats(formats, n=400, alpha=0.5).with_sh_degree(3)
    splats.opacities[:200] = -3.0  # alpha 0.047
    obj = api.splats_to_object(splats, "controls")
    mod = api.attach_preview(obj)
    assert mod.name == "Splat Controls" and obj.data.type == "GAUSSIAN_SPLAT"

    keep = []

    def evaluated():
        geometry, _ = _evaluated(obj)
        keep.append(geometry)  # the point cloud lives as long as its geometry set
        cloud = geometry.pointcloud
        assert cloud.type == "GAUSSIAN_SPLAT"
        return geometry, cloud

    assert len(evaluated()[1].points) == 400
    _set_input(obj, "Opacity Threshold", 0.1)
    assert len(evaluated()[1].points) == 200
    _set_input(obj, "Opacity Threshold", 0.0)
    box = bpy.data.objects.new("box", None)
    box.empty_display_type = "CUBE"
    box.scale = (0.5, 0.5, 0.5)
    bpy.context.scene.collection.objects.link(box)
    _set_input(obj, "Crop Box", box)
    assert len(evaluated()[1].points) == np.all(np.abs(splats.means) <= 0.5, axis=1).sum()
    _set_input(obj, "Crop Box", None)
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.splatwork.add_crop_box() == {"FINISHED"}
    assert len(evaluated()[1].points) == 400
    bpy.data.objects["controls Crop Box"].scale = [s / 2 for s in bpy.data.objects["controls Crop Box"].scale]
    assert 0 < len(evaluated()[1].points) < 400
    _set_input(obj, "Crop Box", None)
    _set_input(obj, "Display Ratio", 0.25)  # the test depsgraph is a viewport one
    assert 50 < len(evaluated()[1].points) < 150
    _set_input(obj, "Display Ratio", 1.0)
    _set_input(obj, "Scale Multiplier", 2.0)
    geometry, cloud = evaluated()
    np.testing.assert_allclose(_read(cloud.attributes, "scale", 3), 2 * np.exp(splats.scales), rtol=1e-5)
    for degree, kept in ((3, 15), (2, 8), (1, 3), (0, 0)):
        _set_input(obj, "SH Degree", degree)
        names = set(evaluated()[1].attributes.keys())
        assert {f"radiance:sh_{k}" for k in range(kept)} <= names
        assert not {f"radiance:sh_{k}" for k in range(kept, 15)} & names, degree


@native_only
def test_blenders_own_import_is_a_splat_object_everywhere(blender_with_splatwork, splatwork, tmp_path):
    """A native splat made by Blender's PLY importer: Splatwork reads, exports and controls it."""
    path = shared_data("splats", "plush_dog.ply")
    assert bpy.ops.wm.ply_import(filepath=str(path)) == {"FINISHED"}
    obj = bpy.context.active_object
    api = splatwork.addon.splats
    assert api.is_splat_object(obj) and api.is_native(obj) and api.splat_modifier(obj) is None
    from conftest import assert_splats_close

    source = splatwork.bridge.formats.read_splats(path)
    got = api.object_to_splats(obj)
    assert_splats_close(got, source, exact_extras=False)  # Blender's importer drops nx/ny/nz
    # Exported by Splatwork, it reads back as the source file (float32 rounding of Blender's attributes).
    for other in bpy.context.selected_objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    out = tmp_path / "exported.ply"
    assert bpy.ops.splatwork.export_splats(filepath=str(out), apply_transform=True) == {"FINISHED"}
    assert_splats_close(splatwork.bridge.formats.read_splats(out), source, exact_extras=False)
    assert bpy.ops.splatwork.add_crop_box() == {"FINISHED"}
    assert api.splat_modifier(obj).name == "Splat Controls"


@native_only
def test_blenders_own_spz_import_exports_through_splatwork(blender_with_splatwork, splatwork, tmp_path):
    """An SPZ (v3, gzip: Blender's importer cannot read v4) from Blender's own importer, exported by
    Splatwork as PLY, holds what Blender imported."""
    from conftest import assert_splats_close

    formats = splatwork.bridge.formats
    source = formats.read_splats(shared_data("splats", "plush_dog.ply"))
    spz = tmp_path / "dog.spz"
    formats.write_splats(spz, source, fmt="spz")
    assert bpy.ops.wm.spz_import(filepath=str(spz)) == {"FINISHED"}
    obj = bpy.context.active_object
    api = splatwork.addon.splats
    assert api.is_native(obj)
    imported = api.object_to_splats(obj, apply_transform=True)
    for other in bpy.context.selected_objects:
        other.select_set(False)
    obj.select_set(True)
    out = tmp_path / "from_blender.ply"
    assert bpy.ops.splatwork.export_splats(filepath=str(out), apply_transform=True) == {"FINISHED"}
    assert_splats_close(formats.read_splats(out), imported, exact_extras=False)
    # ... and is the file's content, SPZ's quantisation aside, turned z-up: Blender's SPZ importer bakes
    # -90 degrees about X into the data, the turn Splatwork's importer puts on the object instead.
    ours = formats.read_splats(spz).means
    np.testing.assert_allclose(imported.means, ours @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]]), atol=1e-3)


def _quad_normals(obj):
    geometry, mesh = _evaluated(obj)
    corners = np.array([v.co[:] for v in mesh.vertices]).reshape(-1, 4, 3)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return normals / np.linalg.norm(normals, axis=1, keepdims=True)


@quads_only
def test_viewport_draws_face_the_camera_that_follows_the_viewport(blender_with_splatwork, splatwork):
    api = splatwork.addon.splats
    obj = api.splats_to_object(_few_splats(splatwork.bridge.formats), "viewed")
    api.attach_preview(obj)
    scene_camera = _camera(bpy.context.scene, (0, -4, 0), (0, 0, 0))
    follower = bpy.data.objects["Splatwork Viewport View"]
    assert follower.users_scene == () and tuple(follower.scale) == (0, 0, 0)  # follows no viewport yet
    forward = np.array(scene_camera.matrix_world.col[2][:3])
    assert np.allclose(np.abs(_quad_normals(obj) @ forward), 1.0, atol=1e-4)
    # The timer callback copies the largest 3D viewport's view (headless bpy keeps the startup
    # screen's viewports); viewport evaluations then face it.
    assert splatwork.addon.splats.viewport.sync_view_camera() > 0
    bpy.context.view_layer.update()
    assert tuple(follower.scale) != (0, 0, 0)
    forward = np.array(follower.matrix_world.col[2][:3])
    assert np.allclose(np.abs(_quad_normals(obj) @ forward), 1.0, atol=1e-4)
    _aim(follower, (4, 0, 1), (0, 0, 0))
    forward = np.array(follower.matrix_world.col[2][:3])
    assert np.allclose(np.abs(_quad_normals(obj) @ forward), 1.0, atol=1e-4)


def _psnr(a, b):
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


# Cameras around the plush dog (positions relative to its median point, in the imported object's frame).
DOG_CAMERAS = {"front": (0.0, -0.45, 0.15), "side": (0.35, 0.3, 0.1), "above": (-0.2, -0.2, 0.4)}


def _dog_scene(splatwork, view_transform):
    path = shared_data("splats", "plush_dog.ply")
    assert bpy.ops.splatwork.import_splats(filepath=str(path)) == {"FINISHED"}
    obj = bpy.context.active_object
    world_splats = splatwork.addon.splats.object_to_splats(obj, apply_transform=True)
    scene = bpy.context.scene
    scene.world = None  # black background, like the reference
    scene.view_settings.view_transform = view_transform
    scene.render.resolution_x, scene.render.resolution_y = WIDTH, HEIGHT
    centre = np.median(world_splats.means, axis=0)
    cam = _camera(scene, centre, centre + 1)

    def reference(offset):
        _aim(cam, centre + np.array(offset), centre)
        K, view = _pinhole(cam)
        rgb = np.clip(reference_render(world_splats, K, view, WIDTH, HEIGHT)["rgb"], 0, 1)
        return np.round(rgb * 255) / 255  # the same 8-bit quantisation as the PNG render

    return obj, scene, reference


CYCLES_CASES = [
    # Native splats (5.3+): Cycles ray-traces the Gaussians stochastically, so the match grows with
    # samples (measured 20.3 / 23.6 / 26.1 dB at 1 / 4 / 16 samples, front view).
    pytest.param("native", "Standard", ("front", "side", "above"), 24.0, 32, marks=native_only),
    # Blender blends in linear light, 3DGS in sRGB: semi-transparent edges come out a little
    # brighter here (measured 27.3-28.6 dB). The floor is the aim, with that margin.
    pytest.param("linear", "Standard", ("front", "side", "above"), 25.0, 1, marks=quads_only),
    # Trainer blending + Raw composites in sRGB like 3DGS: only float and sampling noise remain
    # (measured 52-54 dB), so a regression in shape, colour or order shows immediately.
    pytest.param("trainer", "Raw", ("front",), 45.0, 1, marks=quads_only),
]


@pytest.mark.parametrize("blending, view_transform, cameras, floor, samples", CYCLES_CASES)
def test_cycles_render_matches_the_reference_rasterizer(blender_with_splatwork, splatwork, render,
                                                       blending, view_transform, cameras, floor, samples):
    obj, scene, reference = _dog_scene(splatwork, view_transform)
    if blending != "native":
        _set_input(obj, "Trainer Blending", blending == "trainer")
    # The reference samples each pixel at its centre: a point-sized pixel filter does too, and with
    # no roulette on transparent bounces one sample is exact for the quads.
    scene.cycles.filter_width = 0.01
    for name in cameras:
        want = reference(DOG_CAMERAS[name])
        got = render(scene, samples=samples, resolution=(WIDTH, HEIGHT))[..., :3]
        psnr = _psnr(got, want)
        print(f"Cycles {blending} {name}: PSNR {psnr:.2f} dB")
        assert psnr > floor, f"{name}: {psnr:.2f} dB"


EEVEE_PROBE = """
import bpy
bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
scene = bpy.context.scene
bpy.ops.mesh.primitive_cube_add()
camera = bpy.data.objects.new("probe", bpy.data.cameras.new("probe"))
scene.collection.objects.link(camera)
camera.location = (4.0, -4.0, 3.0)
camera.rotation_euler = (1.1, 0.0, 0.78)
scene.camera = camera
scene.render.engine = "BLENDER_EEVEE"
scene.render.resolution_x = scene.render.resolution_y = 16
scene.render.filepath = {path!r}
bpy.ops.render.render(write_still=True)
print("EEVEE-OK")
"""


EEVEE_PROBE_SECONDS = 240


def start_early(names: list[str]) -> None:
    """Called by conftest once the tests are selected (``names``: this module's): when the EEVEE test is
    among them, its probe starts now. The probe's first EEVEE render compiles EEVEE's shaders on the CPU
    (over a minute with llvmpipe on 2 cores), which then overlaps the tests that run before the EEVEE
    one instead of adding to the run."""
    if test_eevee_render_matches_the_reference_rasterizer.__name__ in names:
        _eevee_probe()


@functools.cache
def _eevee_probe():
    """The probe's Blender, started on the first call: (process, its folder, when it started)."""
    folder = tempfile.mkdtemp(prefix="splatwork-eevee-probe-")
    code = EEVEE_PROBE.format(path=os.path.join(folder, "probe.png"))
    with open(os.path.join(folder, "log.txt"), "wb") as log:  # a file, not a pipe nobody reads until the end
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)
    atexit.register(_end_probe, proc, folder)
    return proc, folder, time.monotonic()


def _end_probe(proc, folder) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    shutil.rmtree(folder, ignore_errors=True)


@functools.cache
def _eevee_unavailable() -> str | None:
    """Why EEVEE cannot render here, or None. EEVEE needs OpenGL: a GPU, or Mesa's software llvmpipe
    through EGL (what CI has). A context that cannot be made may hang, so a subprocess asks, bounded."""
    proc, folder, started = _eevee_probe()
    try:
        proc.wait(timeout=max(1.0, started + EEVEE_PROBE_SECONDS - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return (f"EEVEE did not finish a 16x16 probe render within {EEVEE_PROBE_SECONDS} s: no usable OpenGL "
                "context here")
    with open(os.path.join(folder, "log.txt"), encoding="utf-8", errors="replace") as log:
        output = log.read()
    if "EEVEE-OK" not in output:
        tail = output.strip().splitlines()[-3:]
        return "EEVEE cannot render here (no OpenGL context): " + " | ".join(tail)
    return None


def test_eevee_render_matches_the_reference_rasterizer(blender_with_splatwork, splatwork):
    from conftest import render_to_array

    reason = _eevee_unavailable()
    if reason:
        pytest.skip(reason)

    obj, scene, reference = _dog_scene(splatwork, "Standard")
    scene.render.engine = "BLENDER_EEVEE"
    scene.eevee.taa_render_samples = 32 if NATIVE else 1  # native: stochastic, measured 27.2 dB at 32 samples
    scene.render.filter_size = 0.01
    for name in ("front", "side"):
        want = reference(DOG_CAMERAS[name])
        got = render_to_array(scene)[..., :3]
        psnr = _psnr(got, want)
        print(f"EEVEE {name}: PSNR {psnr:.2f} dB")
        assert psnr > 25.0, f"{name}: {psnr:.2f} dB"
