"""Camera conventions: COLMAP intrinsics/poses <-> Blender settings, checked against Blender's own projection."""
from __future__ import annotations

import bpy
import conftest
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from hypothesis import given, settings
from hypothesis import strategies as st
from mathutils import Matrix, Vector

from bridge.formats.cameras import (
    Camera,
    View,
    blender_to_intrinsics,
    intrinsics_to_blender,
    matrix_world_to_pose,
    pose_to_matrix_world,
    project,
    up_and_centre_transform,
    with_pinhole,
)

sizes = st.integers(min_value=8, max_value=4000)
focals = st.floats(min_value=20.0, max_value=8000.0)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q * np.linalg.det(q)


@settings(max_examples=200, deadline=None)
@given(w=sizes, h=sizes, fx=focals, ratio=st.floats(0.5, 2.0), cxf=st.floats(-0.3, 1.3), cyf=st.floats(-0.3, 1.3))
def test_intrinsics_round_trip_through_blender_settings(w, h, fx, ratio, cxf, cyf):
    fy = fx * ratio
    cx, cy = cxf * w, cyf * h
    b = intrinsics_to_blender(fx, fy, cx, cy, w, h)
    assert b.pixel_aspect_x >= 1.0 and b.pixel_aspect_y >= 1.0
    assert b.sensor_fit in ("HORIZONTAL", "VERTICAL")
    back = blender_to_intrinsics(b.lens, b.sensor_width, b.sensor_height, b.sensor_fit, b.shift_x, b.shift_y,
                                 b.resolution_x, b.resolution_y, b.pixel_aspect_x, b.pixel_aspect_y)
    np.testing.assert_allclose(back[:4], (fx, fy, cx, cy), rtol=1e-12, atol=1e-9)
    assert back[4:] == (w, h)


@pytest.mark.parametrize("fit", ["AUTO", "HORIZONTAL", "VERTICAL"])
def test_blender_to_intrinsics_resolves_sensor_fit_like_blender(fit):
    # An AUTO camera, portrait, with its own sensor height: Blender uses sensor_width for AUTO.
    fx, fy, cx, cy, w, h = blender_to_intrinsics(50.0, 36.0, 24.0, fit, 0.1, -0.05, 600, 900, 1.0, 1.0, 50)
    assert (w, h) == (300, 450)
    sensor = 24.0 if fit == "VERTICAL" else 36.0
    viewfac = 300 if fit == "HORIZONTAL" else 450
    assert fx == pytest.approx(50.0 * viewfac / sensor) and fy == pytest.approx(fx)
    assert cx == pytest.approx(150 - 0.1 * viewfac) and cy == pytest.approx(225 - 0.05 * viewfac)


def test_pose_round_trip_with_world_transform():
    rng = np.random.default_rng(1)
    world = np.eye(4)
    world[:3, :3] = _random_rotation(rng)
    world[:3, 3] = [1.0, -2.0, 0.5]
    for _ in range(50):
        R, t = _random_rotation(rng), rng.normal(size=3)
        m = pose_to_matrix_world(R, t, world)
        R2, t2 = matrix_world_to_pose(m, world)
        np.testing.assert_allclose(R2, R, atol=1e-12)
        np.testing.assert_allclose(t2, t, atol=1e-12)


def test_blender_camera_axes_are_colmap_axes_flipped():
    # A COLMAP camera at the origin looking down +z: in Blender it looks down world +z too, so its
    # local -Z maps to +z and its local +Y (up) to COLMAP's -y.
    m = pose_to_matrix_world(np.eye(3), np.zeros(3))
    np.testing.assert_allclose(m[:3, :3] @ [0, 0, -1], [0, 0, 1])
    np.testing.assert_allclose(m[:3, :3] @ [0, 1, 0], [0, -1, 0])


def test_object_scale_is_ignored_on_export():
    rng = np.random.default_rng(2)
    R, t = _random_rotation(rng), rng.normal(size=3)
    m = pose_to_matrix_world(R, t)
    m[:3, :3] *= [2.0, 3.0, 0.5]
    R2, t2 = matrix_world_to_pose(m)
    np.testing.assert_allclose(R2, R, atol=1e-12)
    np.testing.assert_allclose(t2, t, atol=1e-12)


def test_up_and_centre_makes_camera_up_vectors_z():
    rng = np.random.default_rng(3)
    tilt = _random_rotation(rng)
    views = []
    for i, angle in enumerate(np.linspace(0, 2 * np.pi, 8, endpoint=False)):
        # Level cameras on a circle around the origin (world z up), then the whole world tilted.
        forward = -np.array([np.cos(angle), np.sin(angle), 0.0])
        right = np.cross(forward, [0.0, 0.0, 1.0])
        down = np.cross(forward, right)
        R = np.stack([right, down, forward]) @ tilt.T
        centre = tilt @ (-4 * forward + [0, 0, 1.0]) + [5.0, 6.0, 7.0]
        views.append(View(i + 1, f"{i}.png", 1, R, -R @ centre))
    points = (tilt @ rng.normal(size=(3, 100))).T + [5.0, 6.0, 7.0]
    m = up_and_centre_transform(views, points)
    for v in views:
        blender = pose_to_matrix_world(v.R, v.t, m)
        np.testing.assert_allclose(blender[:3, 1] @ [0, 0, 1], 1.0, atol=1e-9)  # camera +Y is world up
    np.testing.assert_allclose(m[:3, :3] @ np.median(points, axis=0) + m[:3, 3], 0, atol=1e-9)


def test_camera_pinhole_part_of_every_model():
    cam = Camera(1, "OPENCV", 640, 480, np.array([500.0, 510.0, 320.5, 240.5, 0.1, -0.01, 0.001, 0.002]))
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (500.0, 510.0, 320.5, 240.5)
    assert cam.distortion == {"k1": 0.1, "k2": -0.01, "p1": 0.001, "p2": 0.002}
    simple = Camera(2, "SIMPLE_RADIAL", 64, 48, np.array([50.0, 32.0, 24.0, -0.2]))
    assert simple.fy == 50.0 and simple.distortion == {"k": -0.2}
    np.testing.assert_allclose(simple.K(), [[50, 0, 32], [0, 50, 24], [0, 0, 1]])
    with pytest.raises(ValueError, match="takes 4 parameters"):
        Camera(3, "PINHOLE", 64, 48, np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="no pinhole part"):
        _ = Camera(4, "EQUIRECTANGULAR", 64, 32, np.array([64.0, 32.0])).fx


@pytest.mark.parametrize(
    "intrinsics",
    [
        (800.0, 800.0, 320.0, 240.0, 640, 480),  # the plain case
        (700.0, 910.0, 301.3, 266.9, 640, 480),  # fy > fx: taller pixels, off-centre
        (1210.0, 930.0, 201.7, 377.2, 400, 700),  # portrait, fx > fy, vertical fit
        (95.0, 95.0, 70.0, 20.0, 96, 72),  # tiny and far off-centre
    ],
)
def test_blender_projection_matches_colmap_projection(blender, intrinsics):
    """The real thing: Blender's own world_to_camera_view lands on the COLMAP pixel."""
    fx, fy, cx, cy, w, h = intrinsics
    rng = np.random.default_rng(4)
    R, t = _random_rotation(rng), rng.normal(size=3)
    cam = Camera.pinhole(1, w, h, fx, fy, cx, cy)
    view = View(1, "a.png", 1, R, t)
    # Points in front of the camera, spread over (and beyond) the image.
    pix = rng.uniform([-0.2 * w, -0.2 * h], [1.2 * w, 1.2 * h], size=(40, 2))
    depth = rng.uniform(0.5, 20.0, size=40)
    x_cam = np.column_stack([(pix - [cx, cy]) / [fx, fy] * depth[:, None], depth])
    world = (x_cam - t) @ R
    np.testing.assert_allclose(project(cam, view, world), pix, atol=1e-9)

    scene = bpy.context.scene
    b = intrinsics_to_blender(fx, fy, cx, cy, w, h)
    data = bpy.data.cameras.new("cam")
    obj = bpy.data.objects.new("cam", data)
    scene.collection.objects.link(obj)
    data.lens, data.sensor_fit = b.lens, b.sensor_fit
    data.sensor_width, data.sensor_height = b.sensor_width, b.sensor_height
    data.shift_x, data.shift_y = b.shift_x, b.shift_y
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = b.resolution_x, b.resolution_y, 100
    r.pixel_aspect_x, r.pixel_aspect_y = b.pixel_aspect_x, b.pixel_aspect_y
    obj.matrix_world = Matrix(pose_to_matrix_world(R, t).tolist())
    bpy.context.view_layer.update()
    got = []
    for p in world:
        ndc = world_to_camera_view(scene, obj, Vector(p))
        got.append((ndc.x * w, (1.0 - ndc.y) * h))
    np.testing.assert_allclose(np.array(got), pix, atol=0.01)
    # And back: the settings Blender holds give the same intrinsics and pose.
    back = blender_to_intrinsics(data.lens, data.sensor_width, data.sensor_height, data.sensor_fit, data.shift_x,
                                 data.shift_y, r.resolution_x, r.resolution_y, r.pixel_aspect_x, r.pixel_aspect_y)
    np.testing.assert_allclose(back[:4], (fx, fy, cx, cy), rtol=1e-5)
    R2, t2 = matrix_world_to_pose(np.array(obj.matrix_world))
    np.testing.assert_allclose(R2, R, atol=1e-6)
    np.testing.assert_allclose(t2, t, atol=1e-5)


def test_with_pinhole_never_drops_fy_or_distortion():
    same = with_pinhole("SIMPLE_RADIAL", [50.0, 32.0, 24.0, -0.2], 60.0, 60.0, 30.0, 20.0, width=64, height=48)
    assert same.model == "SIMPLE_RADIAL" and list(same.params) == [60.0, 30.0, 20.0, -0.2]
    # fx != fy (a pixel aspect set in Blender): the two-focal relative keeps both and the distortion.
    wider = with_pinhole("SIMPLE_RADIAL", [50.0, 32.0, 24.0, -0.2], 60.0, 66.0, 30.0, 20.0, width=64, height=48)
    assert wider.model == "OPENCV" and list(wider.params) == [60.0, 66.0, 30.0, 20.0, -0.2, 0.0, 0.0, 0.0]
    fisheye = with_pinhole("RADIAL_FISHEYE", [50.0, 32.0, 24.0, 0.1, 0.01], 60.0, 66.0, 30.0, 20.0, width=64,
                           height=48)
    assert fisheye.model == "OPENCV_FISHEYE" and list(fisheye.params[4:]) == [0.1, 0.01, 0.0, 0.0]
    two = with_pinhole("OPENCV", [1, 2, 3, 4, 0.1, 0.2, 0.3, 0.4], 60.0, 66.0, 30.0, 20.0, width=64, height=48)
    assert list(two.params) == [60.0, 66.0, 30.0, 20.0, 0.1, 0.2, 0.3, 0.4]
    with pytest.raises(ValueError, match="image size 0x48 is not positive"):
        with_pinhole("SIMPLE_PINHOLE", [1, 2, 3], 60.0, 66.0, 30.0, 20.0, width=0, height=48)
    with pytest.raises(ValueError, match="no pinhole part"):
        with_pinhole("EQUIRECTANGULAR", [64, 32], 60.0, 66.0, 30.0, 20.0, width=64, height=32)



def test_blender_camera_and_splat_agree_on_where_a_point_is(blender, render):
    """A Cycles render of a small glowing ball and our render of a splat at its centre, from the same
    Blender camera (lens shift, vertical fit, non-square resolution): the blobs coincide."""
    from bridge.formats.cameras import blender_to_intrinsics, matrix_world_to_pose

    bpy = blender
    scene = bpy.context.scene
    cam_data = bpy.data.cameras.new("cam")
    cam_data.lens, cam_data.sensor_fit, cam_data.sensor_height = 40.0, "VERTICAL", 20.0
    cam_data.shift_x, cam_data.shift_y = 0.08, -0.05
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    cam.location = (1.5, -3.0, 1.2)
    cam.rotation_euler = (np.radians(72), 0.0, np.radians(25))
    scene.camera = cam
    point = (0.35, 0.2, 0.45)
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.06, location=point, segments=24, ring_count=12)
    mat = bpy.data.materials.new("glow")
    nodes = mat.node_tree.nodes
    nodes.clear()
    emit = nodes.new("ShaderNodeEmission")
    emit.inputs["Strength"].default_value = 3.0
    output = nodes.new("ShaderNodeOutputMaterial")
    mat.node_tree.links.new(emit.outputs[0], output.inputs[0])
    bpy.context.object.data.materials.append(mat)
    scene.render.film_transparent = True
    width, height = 80, 60
    pixels = render(scene, samples=16, resolution=(width, height))
    bpy.context.view_layer.update()

    fx, fy, cx, cy, w, h = blender_to_intrinsics(
        cam_data.lens, cam_data.sensor_width, cam_data.sensor_height, cam_data.sensor_fit, cam_data.shift_x,
        cam_data.shift_y, width, height)
    R, t = matrix_world_to_pose(np.array(cam.matrix_world))
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, t
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    out = conftest.reference_render(conftest.one_splat(point, sigma=0.03), K, w2c, w, h)
    ball = conftest.centroid(pixels[..., 3])
    splat = conftest.centroid(out["alpha"])
    assert pixels[..., 3].sum() > 5 and out["alpha"].sum() > 5
    np.testing.assert_allclose(splat, ball, atol=0.1)
