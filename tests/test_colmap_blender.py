"""COLMAP cameras in a real Blender: import, Blender's own projection against pycolmap's, export round trips."""
from __future__ import annotations

import json

import bpy
import numpy as np
import pycolmap
import pytest
from bpy_extras.object_utils import world_to_camera_view
from conftest import shared_data
from mathutils import Matrix, Vector
from PIL import Image
from test_colmap import small_reconstruction

from bridge.formats import colmap


def _write_images(rec, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for view in rec.views:
        cam = rec.cameras[view.camera_id]
        Image.new("RGB", (cam.width, cam.height), (40 * view.id % 255, 90, 160)).save(folder / view.name)


@pytest.fixture
def small_project(tmp_path):
    rec = small_reconstruction()
    colmap.write_model(rec, tmp_path / "sparse" / "0")
    _write_images(rec, tmp_path / "images")
    return tmp_path, rec


def _blender_pixels(scene, obj, points):
    """Blender's own projection of world points through ``obj`` at the scene's render size."""
    w, h = scene.render.resolution_x, scene.render.resolution_y
    out = []
    for p in points:
        ndc = world_to_camera_view(scene, obj, Vector(p))
        out.append((ndc.x * w, (1.0 - ndc.y) * h, ndc.z))
    return np.array(out)


def _pycolmap_pixels(model_dir, image_name, points):
    rec = pycolmap.Reconstruction(str(model_dir))
    image = rec.find_image_with_name(image_name)
    x_cam = np.asarray(points) @ image.cam_from_world().rotation.matrix().T + image.cam_from_world().translation
    return rec.cameras[image.camera_id].img_from_cam(x_cam), x_cam[:, 2]


def _check_projection(scene, model_dir, points, world=None, tol=0.01):
    """Every camera of the import projects ``points`` (COLMAP world) where pycolmap does."""
    state = scene.splatwork_colmap
    cameras = [o for o in state.collection.objects if o.type == "CAMERA" and "splatwork_frames" not in o.data]
    assert cameras
    world = np.eye(4) if world is None else world
    blender_points = np.asarray(points) @ world[:3, :3].T + world[:3, 3]
    worst = 0.0
    for obj in cameras:
        bpy.ops.splatwork.activate_camera(camera=obj.name)
        assert scene.camera == obj
        expected, depth = _pycolmap_pixels(model_dir, obj.data.splatwork_colmap.image_name, points)
        got = _blender_pixels(scene, obj, blender_points)
        front = depth > 1e-3
        assert front.sum() >= min(5, len(points))
        np.testing.assert_allclose(got[front, 2], depth[front], rtol=1e-4)
        err = np.abs(got[front, :2] - expected[front]).max()
        worst = max(worst, err)
    assert worst < tol, f"worst reprojection difference {worst:.5f} px"
    return worst


def _data_counts():
    return {name: len(getattr(bpy.data, name)) for name in
            ("objects", "cameras", "images", "collections", "meshes", "pointclouds", "materials", "actions")}


def test_import_builds_the_whole_collection(blender_with_splatwork, small_project):
    project, rec = small_project
    result = bpy.ops.splatwork.import_colmap(directory=str(project))  # what the file browser fills in
    assert result == {"FINISHED"}
    scene = bpy.context.scene
    collection = scene.splatwork_colmap.collection
    assert collection.name in scene.collection.children
    cams = [o for o in collection.objects if o.type == "CAMERA"]
    assert sorted(o.name for o in cams) == sorted([v.name for v in rec.views] + [f"{collection.name} animated"])
    first = bpy.data.objects["view_000.png"]
    assert first.data.background_images[0].image.filepath.endswith("view_000.png")
    assert list(first.data["splatwork_colmap_params"]) == list(rec.cameras[1].params)
    points = next(o for o in collection.objects if o.type == "POINTCLOUD")
    assert len(points.data.points) == len(rec.points)
    assert {"color", "track_length", "error"} <= set(points.data.attributes.keys())
    # Importing activates the first camera with its own resolution and pixel aspect.
    assert scene.camera == first
    assert (scene.render.resolution_x, scene.render.resolution_y) == (64, 48)
    assert scene.render.pixel_aspect_x == pytest.approx(77.0 / 70.0, rel=1e-6)


def test_non_square_pixels_and_off_centre_principal_point_match_pycolmap(blender_with_splatwork, tmp_path):
    rec = small_reconstruction()
    rec.cameras[2] = type(rec.cameras[1])(2, "PINHOLE", 40, 60, np.array([55.0, 48.0, 31.0, 12.5]))
    colmap.write_model(rec, tmp_path / "sparse" / "0")
    assert bpy.ops.splatwork.import_colmap(model_dir=str(tmp_path / "sparse" / "0")) == {"FINISHED"}
    _check_projection(bpy.context.scene, tmp_path / "sparse" / "0", rec.points)


@pytest.mark.parametrize("run", ["sparse", "sparse_rerun"])
def test_undistorted_real_model_matches_pycolmap_to_a_hundredth_of_a_pixel(blender_with_splatwork, tmp_path, run):
    statue = shared_data("colmap", "statue_of_liberty")
    rec = colmap.read_model(statue / run / "0")
    names = [v.name for v in rec.views[:3]]
    model_dir, images_dir = colmap.undistort(statue / run / "0", statue / "images", tmp_path / "und", names)
    undistorted = colmap.read_model(model_dir)
    assert {c.model for c in undistorted.cameras.values()} == {"PINHOLE"}
    # Keep the three undistorted views (the others have no image written).
    undistorted.views = [v for v in undistorted.views if v.name in names]
    colmap.write_model(undistorted, tmp_path / "model")
    assert bpy.ops.splatwork.import_colmap(model_dir=str(tmp_path / "model"), images_dir=str(images_dir),
                                           world="UP_CENTERED") == {"FINISHED"}
    scene = bpy.context.scene
    world = np.array(scene.splatwork_colmap.collection["splatwork_world_from_colmap"]).reshape(4, 4)
    worst = _check_projection(scene, tmp_path / "model", undistorted.points, world)
    print(f"worst difference {worst:.2e} px over {len(undistorted.points)} points x 3 views")


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("world", ["KEEP", "UP_CENTERED"])
def test_import_export_round_trip(blender_with_splatwork, tmp_path, binary, world):
    statue = shared_data("colmap", "statue_of_liberty", "sparse", "0")
    assert bpy.ops.splatwork.import_colmap(model_dir=str(statue), images_dir="", world=world,
                                           backgrounds=False) == {"FINISHED"}
    out = tmp_path / "export"
    assert bpy.ops.splatwork.export_colmap(directory=str(out), binary=binary) == {"FINISHED"}
    original = pycolmap.Reconstruction(str(statue))
    back = pycolmap.Reconstruction(str(out))
    assert back.num_reg_images() == original.num_reg_images() == 40
    assert back.num_points3D() == original.num_points3D()
    # The points went through Blender's float32 attributes (and the Z-up transform) and back.
    np.testing.assert_allclose(colmap.read_model(out).points, colmap.read_model(statue).points, atol=1e-4)
    for image in original.images.values():
        other = back.find_image_with_name(image.name)
        cam, cam2 = image.camera, other.camera
        assert cam2.model == cam.model and (cam2.width, cam2.height) == (cam.width, cam.height)
        np.testing.assert_allclose(cam2.params, cam.params, rtol=1e-6)
        a, b = image.cam_from_world(), other.cam_from_world()
        np.testing.assert_allclose(b.rotation.matrix(), a.rotation.matrix(), atol=1e-6)
        np.testing.assert_allclose(b.translation, a.translation, atol=1e-6)


@pytest.mark.parametrize(
    ("fit", "size", "percentage", "aspect", "shift"),
    [
        ("VERTICAL", (120, 90), 50, (1.0, 1.3), (0.12, -0.07)),
        ("AUTO", (90, 120), 100, (1.0, 1.0), (-0.2, 0.1)),  # portrait: AUTO fits the height, sensor_width
        ("AUTO", (160, 90), 100, (1.4, 1.0), (0.05, 0.3)),
        ("HORIZONTAL", (64, 200), 75, (2.0, 1.0), (0.0, -0.25)),
    ],
)
def test_export_any_blender_camera_matches_blender_projection(blender_with_splatwork, tmp_path, fit, size,
                                                              percentage, aspect, shift):
    scene = bpy.context.scene
    r = scene.render
    r.resolution_x, r.resolution_y = size
    r.resolution_percentage = percentage
    r.pixel_aspect_x, r.pixel_aspect_y = aspect
    data = bpy.data.cameras.new("plain")
    data.lens, data.sensor_fit, data.sensor_width, data.sensor_height = 35.0, fit, 32.0, 20.0
    data.shift_x, data.shift_y = shift
    obj = bpy.data.objects.new("plain", data)
    scene.collection.objects.link(obj)
    obj.matrix_world = Matrix.LocRotScale(Vector((3.0, -4.0, 2.0)), Matrix.Rotation(1.1, 3, "Z").to_quaternion()
                                          @ Matrix.Rotation(1.2, 3, "X").to_quaternion(), None)
    bpy.context.view_layer.update()
    assert bpy.ops.splatwork.export_colmap(directory=str(tmp_path / "m"), binary=False) == {"FINISHED"}
    rng = np.random.default_rng(0)
    cam_to_world = np.array(obj.matrix_world)
    local = np.column_stack([rng.uniform(-1, 1, (30, 2)), -rng.uniform(2, 9, 30)])
    points = local @ cam_to_world[:3, :3].T + cam_to_world[:3, 3]
    # world_to_camera_view normalises by the frame, so give it the pixel size that renders.
    r.resolution_x, r.resolution_y = (size[0] * percentage // 100, size[1] * percentage // 100)
    r.resolution_percentage = 100
    expected, _ = _pycolmap_pixels(tmp_path / "m", "plain.png", points)
    got = _blender_pixels(scene, obj, points)
    np.testing.assert_allclose(got[:, :2], expected, atol=0.01)


def test_export_refuses_what_colmap_cannot_hold(blender_with_splatwork, tmp_path):
    data = bpy.data.cameras.new("ortho")
    data.type = "ORTHO"
    bpy.context.scene.collection.objects.link(bpy.data.objects.new("ortho", data))
    with pytest.raises(RuntimeError, match="camera 'ortho' is ortho; only perspective cameras"):
        bpy.ops.splatwork.export_colmap(directory=str(tmp_path / "m"))
    assert not (tmp_path / "m").exists()
    bpy.data.objects.remove(bpy.data.objects["ortho"])
    with pytest.raises(RuntimeError, match="no perspective cameras to export"):
        bpy.ops.splatwork.export_transforms(filepath=str(tmp_path / "t.json"))


def test_animated_camera_applies_each_views_settings_per_frame(blender_with_splatwork, splatwork, small_project):
    project, rec = small_project
    assert bpy.ops.splatwork.import_colmap(model_dir=str(project), frame_start=10) == {"FINISHED"}
    scene = bpy.context.scene
    animated = bpy.data.objects[f"{scene.splatwork_colmap.collection.name} animated"]
    bpy.ops.splatwork.activate_camera(camera=animated.name)
    for i, view in enumerate(rec.views):
        scene.frame_set(10 + i)
        cam = rec.cameras[view.camera_id]
        assert (scene.render.resolution_x, scene.render.resolution_y) == (cam.width, cam.height)
        still = bpy.data.objects[view.name]
        np.testing.assert_allclose(np.array(animated.matrix_world), np.array(still.matrix_world), atol=1e-5)
        # The animated camera sees exactly what that view's still camera sees.
        np.testing.assert_allclose(_blender_pixels(scene, animated, rec.points),
                                   _blender_pixels(scene, still, rec.points), atol=0.01)
        # What a renderer asks for at this frame: the view's K and pose.
        intrinsics, R, t = splatwork.addon.cameras.camera_to_colmap(animated, scene)
        np.testing.assert_allclose(intrinsics.K(), cam.K(), rtol=1e-5)
        np.testing.assert_allclose(R, view.R, atol=1e-5)
        np.testing.assert_allclose(t, view.t, atol=1e-4)
    quats = np.array([list(animated.animation_data.action.fcurve_ensure_for_datablock(
        animated, "rotation_quaternion", index=k).keyframe_points[i].co[1] for k in range(4))
        for i in range(len(rec.views))])
    assert np.all(np.sum(quats[1:] * quats[:-1], axis=1) > 0), "rotations flip hemisphere between keys"


def test_transforms_json_export(blender_with_splatwork, small_project, tmp_path):
    project, rec = small_project
    assert bpy.ops.splatwork.import_colmap(model_dir=str(project), world="UP_CENTERED") == {"FINISHED"}
    path = tmp_path / "transforms.json"
    assert bpy.ops.splatwork.export_transforms(filepath=str(path)) == {"FINISHED"}
    doc = json.loads(path.read_text())
    assert len(doc["frames"]) == len(rec.views)
    frame = next(f for f in doc["frames"] if f["file_path"] == "images/view_000.png")
    np.testing.assert_allclose(frame["transform_matrix"], np.array(bpy.data.objects["view_000.png"].matrix_world),
                               atol=1e-6)
    assert frame["fl_x"] == pytest.approx(70.0, rel=1e-6) and frame["fl_y"] == pytest.approx(77.0, rel=1e-6)


def _make_missing_image(project, rec):
    (project / "images" / rec.views[2].name).unlink()
    return "image(s) of the model are missing: view_002.png"


def _make_wrong_size(project, rec):
    Image.new("RGB", (65, 48)).save(project / "images" / rec.views[0].name)
    return "view_000.png: is 65x48 but the model's camera 1 is 64x48"


def _make_empty_model(project, rec):
    rec.views = []
    colmap.write_model(rec, project / "sparse" / "0")
    return "no registered images"


def _make_corrupt_binary(project, rec):
    path = project / "sparse" / "0" / "images.bin"
    path.write_bytes(path.read_bytes()[:100])
    return "images.bin: corrupt or truncated: claims 6 images"


def _make_no_model(project, rec):
    for f in (project / "sparse" / "0").iterdir():
        f.unlink()
    return "not a COLMAP model: missing cameras"


@pytest.mark.parametrize("damage", [_make_missing_image, _make_wrong_size, _make_empty_model, _make_corrupt_binary,
                                    _make_no_model], ids=lambda f: f.__name__[6:])
def test_bad_input_reports_and_creates_nothing(blender_with_splatwork, small_project, damage):
    project, rec = small_project
    message = damage(project, rec)
    before = _data_counts()
    with pytest.raises(RuntimeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bpy.ops.splatwork.import_colmap(model_dir=str(project / "sparse" / "0"), images_dir=str(project / "images"))
    assert _data_counts() == before
    assert bpy.context.scene.splatwork_colmap.collection is None


def test_activate_camera_rejects_unknown_names(blender_with_splatwork):
    with pytest.raises(RuntimeError, match="no camera object named 'nope'"):
        bpy.ops.splatwork.activate_camera(camera="nope")


def test_undistort_option_makes_every_camera_an_exact_pinhole(blender_with_splatwork, small_project, tmp_path):
    project, rec = small_project
    out = tmp_path / "undistorted"
    assert bpy.ops.splatwork.import_colmap(model_dir=str(project), undistort=True,
                                           undistorted_dir=str(out)) == {"FINISHED"}
    scene = bpy.context.scene
    stills = [o for o in scene.splatwork_colmap.collection.objects
              if o.type == "CAMERA" and "splatwork_frames" not in o.data]
    assert {o.data.splatwork_colmap.model for o in stills} == {"PINHOLE"}
    assert stills[0].data.background_images[0].image.filepath.startswith(str(out / "images"))
    _check_projection(scene, out / "sparse", rec.points)


def test_choosing_a_reconstruction_and_picking_cameras_from_the_panel_list(blender_with_splatwork, tmp_path):
    rec = small_reconstruction()
    colmap.write_model(rec, tmp_path / "sparse" / "0")
    rec.views = rec.views[:3]
    colmap.write_model(rec, tmp_path / "sparse" / "1")
    assert bpy.ops.splatwork.import_colmap(model_dir=str(tmp_path), model="1", animated_camera=False) == {"FINISHED"}
    scene = bpy.context.scene
    state = scene.splatwork_colmap
    names = [o.name for o in state.collection.objects]
    assert sorted(n for n in names if n.endswith(".png")) == [v.name for v in rec.views]
    for name, size in (("view_001.png", (40, 60)), ("view_002.png", (64, 48))):
        state.camera_index = names.index(name)  # what clicking in the panel's list does
        assert scene.camera.name == name
        assert (scene.render.resolution_x, scene.render.resolution_y) == size
    scene.camera.data.splatwork_colmap.resolution_x = 80  # editing the active camera's own settings
    assert scene.render.resolution_x == 80
    with pytest.raises(RuntimeError, match="has no model '7'; found 0, 1"):
        bpy.ops.splatwork.import_colmap(model_dir=str(tmp_path), model="7")


def test_cycles_renders_points_where_pycolmap_projects_them(blender_with_splatwork, small_project, render):
    """Real pixels: small glowing spheres at known 3D points, rendered by Cycles through an imported
    camera with non-square pixels and an off-centre principal point, land on pycolmap's projection."""
    project, rec = small_project
    assert bpy.ops.splatwork.import_colmap(model_dir=str(project), backgrounds=False, points=False,
                                           animated_camera=False) == {"FINISHED"}
    view = rec.views[0]
    cam = rec.cameras[view.camera_id]
    assert cam.model == "PINHOLE" and cam.fx != cam.fy
    targets = np.array([[12.0, 10.0], [50.3, 12.6], [30.5, 27.2], [15.2, 38.7], [54.8, 39.4]])
    depth = 3.0
    x_cam = np.column_stack([(targets - [cam.cx, cam.cy]) / [cam.fx, cam.fy] * depth, np.full(len(targets), depth)])
    world = (x_cam - view.t) @ view.R
    expected, _ = _pycolmap_pixels(project / "sparse" / "0", view.name, world)
    np.testing.assert_allclose(expected, targets, atol=1e-9)
    glow = bpy.data.materials.new("glow")
    nodes = glow.node_tree.nodes
    emission = nodes.new("ShaderNodeEmission")
    glow.node_tree.links.new(emission.outputs[0], nodes["Material Output"].inputs["Surface"])
    for p in world:
        bpy.ops.mesh.primitive_uv_sphere_add(radius=1.2 * depth / cam.fx, location=tuple(p), segments=24,
                                             ring_count=12)
        bpy.context.object.data.materials.append(glow)
    scene = bpy.context.scene
    bpy.ops.splatwork.activate_camera(camera=view.name)
    scene.view_settings.view_transform = "Standard"
    image = render(scene, samples=64)[..., 0].astype(np.float64)  # (H, W), top row first
    assert image.shape == (cam.height, cam.width)
    ys, xs = np.mgrid[0: cam.height, 0: cam.width] + 0.5  # pixel centres, COLMAP's convention
    centroids = []
    for target in targets:
        window = (np.abs(xs - target[0]) < 4) & (np.abs(ys - target[1]) < 4)
        weight = image * window
        assert weight.sum() > 1.0, f"no sphere near {target}"
        centroids.append([(weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()])
    print(f"rendered centroids off by at most {np.abs(np.array(centroids) - targets).max():.3f} px")
    # A centroid of a 2-3 px anti-aliased blob is good to a few hundredths of a pixel; a wrong shift
    # sign, a dropped fy or a misplaced half pixel would be off by 0.5 px or more.
    np.testing.assert_allclose(centroids, targets, atol=0.1)
