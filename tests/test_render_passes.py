"""Splat render passes: Blender cameras through the bridge, EXR layers, depth against Blender's Z pass,
and the compositor setup. Real bpy, a real `python -m bridge render` subprocess, real EXR files."""
from __future__ import annotations

import math
import time
from pathlib import Path

import bpy
import numpy as np
import OpenEXR
import pytest
from conftest import BRIDGE_PYTHON, EXTENSION_MODULE, reference_render
from mathutils import Matrix

from bridge.formats import SplatSet, cameras
from bridge.formats.transform import bake_transform, quat_to_matrix
from bridge.render import BACKGROUND_DEPTH, srgb_to_linear


def splatwork_compat():
    import importlib

    return importlib.import_module(EXTENSION_MODULE + ".addon.common.compat")


def srgb_encode(linear: float) -> float:
    return 12.92 * linear if linear <= 0.0031308 else 1.055 * linear ** (1 / 2.4) - 0.055


def read_exr(path: Path) -> dict[str, np.ndarray]:
    with OpenEXR.File(str(path), separate_channels=True) as f:
        return {name: np.array(ch.pixels) for name, ch in f.channels().items()}


def splat_cloud(rng: np.random.Generator, n: int, centre, spread: float, sh_degree: int = 1) -> SplatSet:
    s = SplatSet.empty(n, sh_degree)
    s.means[:] = np.asarray(centre, np.float32) + rng.uniform(-spread, spread, (n, 3)).astype(np.float32)
    s.scales[:] = np.log(rng.uniform(0.03, 0.12, (n, 3))).astype(np.float32)
    s.quats[:] = rng.normal(size=(n, 4)).astype(np.float32)
    s.opacities[:] = rng.uniform(0.0, 4.0, n).astype(np.float32)
    s.sh_dc[:] = rng.normal(size=(n, 3)).astype(np.float32)
    s.sh_rest[:] = rng.normal(scale=0.4, size=s.sh_rest.shape).astype(np.float32)
    return s


def set_camera(scene, intr: cameras.BlenderIntrinsics, matrix_world: np.ndarray, percentage: int = 100):
    data = bpy.data.cameras.new("Cam")
    cam = bpy.data.objects.new("Cam", data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    data.lens, data.sensor_width, data.sensor_height = intr.lens, intr.sensor_width, intr.sensor_height
    data.sensor_fit, data.shift_x, data.shift_y = intr.sensor_fit, intr.shift_x, intr.shift_y
    data.clip_start, data.clip_end = 0.1, 100.0
    r = scene.render
    r.resolution_x = intr.resolution_x * 100 // percentage
    r.resolution_y = intr.resolution_y * 100 // percentage
    r.resolution_percentage = percentage
    r.pixel_aspect_x, r.pixel_aspect_y = intr.pixel_aspect_x, intr.pixel_aspect_y
    cam.matrix_world = Matrix(matrix_world.tolist())
    return cam


def look_at_pose(eye, target) -> tuple[np.ndarray, np.ndarray]:
    """COLMAP (R, t) of a camera at ``eye`` looking at ``target`` with world +z up."""
    forward = np.asarray(target, float) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    return R, -R @ np.asarray(eye, float)


def render_pass(tmp_path: Path, name: str = "splats") -> dict[str, np.ndarray]:
    scene = bpy.context.scene
    scene.splatwork_render.name = name
    out = tmp_path / "passes"
    assert bpy.ops.splatwork.render_passes(output_dir=str(out), use_frame_range=False) == {"FINISHED"}
    exr = out / f"{name}_{scene.frame_current:04d}.exr"
    assert exr.is_file() and (out / f"{name}_{scene.frame_current:04d}.png").is_file()
    return read_exr(exr)


def test_camera_with_shift_vertical_fit_and_pixel_aspect_matches_the_colmap_render(
        blender_with_splatwork, splatwork, tmp_path):
    # A portrait image (vertical sensor fit), fx != fy (non-square pixels), off-centre principal point.
    width, height, fx, fy, cx, cy = 40, 64, 70.0, 56.0, 16.5, 36.0
    intr = cameras.intrinsics_to_blender(fx, fy, cx, cy, width, height)
    assert intr.sensor_fit == "VERTICAL" and intr.pixel_aspect_y != intr.pixel_aspect_x
    assert abs(intr.shift_x) > 0.04 and abs(intr.shift_y) > 0.04
    R, t = look_at_pose(np.array([3.0, -4.0, 1.5]), np.array([0.2, 0.1, 0.3]))
    scene = bpy.context.scene
    set_camera(scene, intr, cameras.pose_to_matrix_world(R, t), percentage=50)

    rng = np.random.default_rng(11)
    splats = splat_cloud(rng, 300, (0.0, 0.0, 0.0), 0.8)
    obj = splatwork.addon.splats.splats_to_object(splats, "Cloud")
    turn = quat_to_matrix(np.array([[0.9, 0.2, -0.3, 0.25]]))[0]
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = 1.3 * turn, (0.2, 0.1, 0.3)
    obj.matrix_world = Matrix(matrix.tolist())

    layers = render_pass(tmp_path)

    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, t
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    ref = reference_render(bake_transform(splats, matrix), K, w2c, width, height)
    alpha = layers["Splats.Combined.A"]
    assert alpha.shape == (height, width)
    assert 0.2 < (ref["alpha"] > 0.5).mean() < 0.9, "the cloud must fill part of the frame"
    np.testing.assert_allclose(alpha, ref["alpha"], atol=2e-3)
    straight = np.clip(ref["rgb"] / np.maximum(ref["alpha"], 1e-12)[..., None], 0, 1)
    linear = srgb_to_linear(straight) * ref["alpha"][..., None]
    rgb = np.stack([layers[f"Splats.Combined.{c}"] for c in "RGB"], axis=-1)
    np.testing.assert_allclose(rgb, linear, atol=2e-3)
    covered = ref["alpha"] > 0.5
    np.testing.assert_allclose(layers["Splats.Depth.Z"][covered], ref["depth"][covered], rtol=1e-3)


def _emission_sphere(name: str, location, radius: float, colour) -> None:
    bpy.ops.mesh.primitive_uv_sphere_add(radius=radius, location=location, segments=24, ring_count=12)
    bpy.context.object.name = name
    _emit(bpy.context.object, colour)


def _emit(obj, colour) -> None:
    mat = bpy.data.materials.new(obj.name)
    nodes = mat.node_tree.nodes
    nodes.clear()
    emit = nodes.new("ShaderNodeEmission")
    emit.inputs["Color"].default_value = (*colour, 1.0)
    out = nodes.new("ShaderNodeOutputMaterial")
    mat.node_tree.links.new(emit.outputs[0], out.inputs[0])
    obj.data.materials.append(mat)


def _centroids(image: np.ndarray) -> np.ndarray:
    """Weighted centroid (x, y) in pixels of each of the R, G, B channels."""
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
    out = []
    for c in range(3):
        w = np.clip(image[..., c] - 0.5 * image[..., [k for k in range(3) if k != c]].sum(-1), 0, None)
        out.append(((w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()))
    return np.array(out)


def test_splats_land_where_blender_renders_the_same_points(blender_with_splatwork, splatwork, tmp_path, render):
    """Blender's own renderer is the judge of the camera conversion (shift, fit, aspect, percentage)."""
    width, height, fx, fy, cx, cy = 40, 64, 70.0, 56.0, 16.5, 36.0
    intr = cameras.intrinsics_to_blender(fx, fy, cx, cy, width, height)
    R, t = look_at_pose(np.array([3.0, -4.0, 1.5]), np.array([0.0, 0.0, 0.0]))
    scene = bpy.context.scene
    set_camera(scene, intr, cameras.pose_to_matrix_world(R, t), percentage=50)
    points = np.array([[0.6, 0.3, 0.5], [-0.5, -0.4, -0.2], [0.1, 0.8, -0.6]])
    colours = np.eye(3)
    for i, (p, c) in enumerate(zip(points, colours, strict=True)):
        _emission_sphere(f"marker{i}", p, 0.09, c)
    scene.world = None
    scene.view_settings.view_transform = "Standard"
    cycles = render(scene, samples=16)[..., :3]
    for obj in [o for o in scene.objects if o.type == "MESH"]:
        bpy.data.objects.remove(obj)

    markers = SplatSet.empty(3, 0)
    markers.means[:] = points
    markers.scales[:] = np.log(0.045)
    markers.opacities[:] = 6.0
    markers.sh_dc[:] = (colours - 0.5) / 0.28209479177387814
    splatwork.addon.splats.splats_to_object(markers, "Markers")
    layers = render_pass(tmp_path)
    ours = np.stack([layers[f"Splats.Combined.{c}"] for c in "RGB"], axis=-1)
    assert cycles.shape[:2] == ours.shape[:2] == (height, width)
    np.testing.assert_allclose(_centroids(ours), _centroids(cycles), atol=0.35)


def _plane_of_splats(size: float, z: float, spacing: float = 0.05) -> SplatSet:
    ticks = np.arange(-size / 2 + spacing / 2, size / 2, spacing)
    xs, ys = np.meshgrid(ticks, ticks)
    s = SplatSet.empty(xs.size, 0)
    s.means[:] = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)], axis=1)
    s.scales[:] = np.log([spacing, spacing, 1e-4])
    s.opacities[:] = 8.0
    s.sh_dc[:] = (np.array([0.9, 0.3, 0.1]) - 0.5) / 0.28209479177387814
    return s


def _blender_depth(scene, tmp_path: Path) -> np.ndarray:
    """Blender's Z pass as the compositor sees it (Render Layers > Depth), saved as a float EXR."""
    scene.view_layers[0].use_pass_z = True
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    tree = bpy.data.node_groups.new("Depth", "CompositorNodeTree")
    tree.interface.new_socket(name="Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    layers = tree.nodes.new("CompositorNodeRLayers")
    tree.links.new(layers.outputs["Depth"], tree.nodes.new("NodeGroupOutput").inputs[0])
    splatwork_compat().set_compositing_tree(scene, tree)
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    scene.render.filepath = str(tmp_path / "blender.exr")
    bpy.ops.render.render(write_still=True)
    splatwork_compat().set_compositing_tree(scene, None)
    return read_exr(tmp_path / "blender.exr")["R"]


def test_depth_layer_agrees_with_blenders_z_pass_for_a_plane(blender_with_splatwork, splatwork, tmp_path):
    scene = bpy.context.scene
    # Camera at the origin looking down -Z with a wide lens: at the plane's corners the distance to
    # the camera is far from the depth along the view axis, so mixing the two up fails here.
    intr = cameras.intrinsics_to_blender(30.0, 30.0, 24.0, 20.0, 48, 40)
    set_camera(scene, intr, np.eye(4))
    distance = 4.0
    bpy.ops.mesh.primitive_plane_add(size=4.0, location=(0.5, 0.0, -distance))
    blender_z = _blender_depth(scene, tmp_path)
    bpy.data.objects.remove(bpy.data.objects["Plane"])
    plane = splatwork.addon.splats.splats_to_object(_plane_of_splats(4.0, -distance, 0.1), "Plane")
    plane.location = (0.5, 0.0, 0.0)

    layers = render_pass(tmp_path)
    ours, alpha = layers["Splats.Depth.Z"], layers["Splats.Combined.A"]
    inside = (blender_z < 1e3) & (alpha > 0.99)
    assert inside.mean() > 0.35
    np.testing.assert_allclose(ours[inside], blender_z[inside], rtol=1e-4)
    np.testing.assert_allclose(blender_z[inside], distance, rtol=1e-4)
    # Blender's empty pixels and ours carry the same "nothing here" depth, so Z-combine treats both alike.
    empty = (blender_z > 1e3) & (alpha < 1e-3)
    assert empty.any()
    np.testing.assert_allclose(blender_z[empty], BACKGROUND_DEPTH, rtol=1e-6)
    np.testing.assert_allclose(ours[empty], BACKGROUND_DEPTH, rtol=1e-6)
    # The corners really are off-axis: their ray length differs from the view-axis depth.
    ys, xs = np.nonzero(inside)
    ray = np.array([(xs.max() + 0.5 - 24.0) / 30.0, (ys.max() + 0.5 - 20.0) / 30.0, 1.0])
    assert np.linalg.norm(ray) > 1.15


def test_compositor_z_combines_the_passes_with_blenders_render(blender_with_splatwork, splatwork, tmp_path, render):
    scene = bpy.context.scene
    intr = cameras.intrinsics_to_blender(30.0, 30.0, 16.0, 12.0, 32, 24)
    set_camera(scene, intr, np.eye(4))
    scene.frame_start, scene.frame_end = 3, 4
    # A splat square at 3 m, half covered by a grey mesh plane at 2 m (left) and half over nothing.
    obj = splatwork.addon.splats.splats_to_object(_plane_of_splats(2.0, -3.0, 0.05), "Splats")
    # Animated: 0.3 m to the left at frame 4 (3 pixels at 3 m with fx = 30).
    obj.keyframe_insert("location", frame=3)
    obj.location.x = -0.3
    obj.keyframe_insert("location", frame=4)
    scene.splatwork_render.output_dir = str(tmp_path / "passes")
    assert bpy.ops.splatwork.render_passes(use_frame_range=True, composite=True) == {"FINISHED"}
    assert sorted(p.name for p in (tmp_path / "passes").iterdir()) == [
        "splats_0003.exr", "splats_0003.png", "splats_0004.exr", "splats_0004.png"]
    frames = [read_exr(tmp_path / "passes" / f"splats_000{f}.exr")["Splats.Combined.A"] for f in (3, 4)]
    centre_x = [(a * (np.arange(a.shape[1]) + 0.5)).sum() / a.sum() for a in frames]
    assert centre_x[1] - centre_x[0] == pytest.approx(-3.0, abs=0.05)
    assert scene.frame_current == 1, "the operator puts the scene back on its frame"
    tree = splatwork_compat().compositing_tree(scene)
    assert tree is not None and tree.name == "Splatwork Composite"
    image_node = next(n for n in tree.nodes if n.bl_idname == "CompositorNodeImage")
    assert image_node.image.source == "SEQUENCE" and image_node.frame_start == 3 and image_node.frame_duration == 2
    zc = next(n for n in tree.nodes if n.bl_idname == "CompositorNodeZcombine")
    assert zc.inputs["Depth A"].links[0].from_socket.name == "Depth"
    assert zc.inputs["Depth B"].links[0].from_node == image_node

    bpy.ops.mesh.primitive_plane_add(size=2.0, location=(-1.0, 0.0, -2.0))
    _emit(bpy.context.object, (0.2, 0.2, 0.2))
    assert obj.hide_render, "Blender's render leaves the splats to the passes"
    scene.world = None
    scene.view_settings.view_transform = "Standard"
    scene.frame_set(3)
    out = render(scene, samples=4)
    row = out[12]
    passes = read_exr(tmp_path / "passes" / "splats_0003.exr")
    assert passes["Splats.Combined.A"][12, 22] > 0.95
    shown = [srgb_encode(float(passes[f"Splats.Combined.{c}"][12, 22])) for c in "RGB"]
    grey = srgb_encode(0.2)
    # Right of centre only the splats are there, through the Standard view in their trained colour
    # (over black); left of centre the nearer mesh hides them; far left the mesh is alone.
    np.testing.assert_allclose(row[22, :3], shown, atol=0.01)
    np.testing.assert_allclose(row[22, :3], [0.9, 0.3, 0.1], atol=0.03)
    np.testing.assert_allclose(row[8, :3], grey, atol=0.03)
    np.testing.assert_allclose(row[2, :3], grey, atol=0.03)
    assert math.isclose(float(row[22, 3]), 1.0, abs_tol=0.01)


def test_bad_setups_are_reported_not_raised(blender_with_splatwork, splatwork, tmp_path):
    scene = bpy.context.scene
    with pytest.raises(RuntimeError, match="no splat objects"):
        bpy.ops.splatwork.render_passes(output_dir=str(tmp_path), use_frame_range=False)
    splats = _plane_of_splats(1.0, -3.0, 0.1).with_sh_degree(1)
    splats.sh_rest[0] = 0.5
    obj = splatwork.addon.splats.splats_to_object(splats, "S")
    with pytest.raises(RuntimeError, match="no camera"):
        bpy.ops.splatwork.render_passes(output_dir=str(tmp_path), use_frame_range=False)
    intr = cameras.intrinsics_to_blender(30.0, 30.0, 16.0, 12.0, 32, 24)
    set_camera(scene, intr, np.eye(4))
    obj.scale = (1.0, 2.0, 1.0)
    with pytest.raises(RuntimeError, match="non-uniform"):
        bpy.ops.splatwork.render_passes(output_dir=str(tmp_path / "out"), use_frame_range=False)
    assert not list((tmp_path / "out").glob("*.exr"))
    with pytest.raises(RuntimeError, match="unsaved"):
        bpy.ops.splatwork.render_passes(output_dir="//passes", use_frame_range=False)


def test_bridge_refuses_bad_jobs_with_exit_code_2(tmp_path):
    import json
    import subprocess

    from bridge import protocol
    from bridge.formats import write_splats

    def run(job: dict) -> tuple[int, protocol.Error]:
        path = tmp_path / "job.json"
        path.write_text(json.dumps(job))
        proc = subprocess.run([BRIDGE_PYTHON, "-m", "bridge", "render", str(path)], capture_output=True,
                              text=True, timeout=120, cwd=Path(__file__).parent.parent)
        events = [protocol.decode_event(line) for line in proc.stdout.splitlines()]
        (error,) = [e for e in events if isinstance(e, protocol.Error)]
        return proc.returncode, error

    code, error = run({"objects": [{"splats": "x.ply"}], "frames": []})
    assert code == protocol.EXIT_BAD_INPUT and "output_dir" in error.message
    frame = {"frame": 1, "width": 8, "height": 8, "K": np.eye(3).tolist(), "world_to_camera": np.eye(4).tolist(),
             "clip_start": 0.1, "clip_end": 10.0, "object_matrices": [np.diag([1.0, 2.0, 1.0, 1.0]).tolist()]}
    job = {"output_dir": str(tmp_path / "out"), "objects": [{"name": "S", "splats": str(tmp_path / "no.ply")}],
           "frames": [frame]}
    code, error = run(job)
    assert code == protocol.EXIT_BAD_INPUT and "no.ply" in error.message
    splats = _plane_of_splats(1.0, 3.0, 0.5).with_sh_degree(1)
    splats.sh_rest[:] = 0.2
    write_splats(tmp_path / "s.ply", splats)
    job["objects"][0]["splats"] = str(tmp_path / "s.ply")
    code, error = run(job)
    assert code == protocol.EXIT_BAD_INPUT and "'S'" in error.message and "non-uniform" in error.message
    assert not list((tmp_path / "out").glob("*.exr"))


def test_clip_range_culls_splats_by_their_depth_along_the_view_axis():
    from bridge.render import FrameJob, render_frame

    near, far = _plane_of_splats(1.0, 3.0, 0.1), _plane_of_splats(4.0, 6.0, 0.2)
    K = np.array([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]])

    def covered(start: float, end: float) -> tuple[float, float]:
        frame = FrameJob(1, 16, 16, K, np.eye(4), start, end, [np.eye(4), np.eye(4)])
        out = render_frame([near, far], ["near", "far"], frame, "cpu")
        z = out["depth"][out["rgba"][..., 3] > 0.5]
        return float(z.min()), float(z.max())

    assert covered(0.1, 100.0) == pytest.approx((3.0, 6.0), abs=1e-3)
    assert covered(0.1, 5.0) == pytest.approx((3.0, 3.0), abs=1e-3)
    assert covered(4.0, 100.0) == pytest.approx((6.0, 6.0), abs=1e-3)


def test_cancel_stops_between_frames_and_keeps_what_was_rendered(blender_with_splatwork, splatwork, tmp_path):
    jobs, passes = splatwork.addon.common.jobs, splatwork.addon.output.render_passes
    scene = bpy.context.scene
    set_camera(scene, cameras.intrinsics_to_blender(20.0, 20.0, 8.0, 8.0, 16, 16), np.eye(4))
    splatwork.addon.splats.splats_to_object(_plane_of_splats(1.0, -3.0, 0.1), "S")
    bpy.context.view_layer.update()
    frames = list(range(1, 301))
    request = passes.write_job(scene, bpy.context.view_layer, tmp_path / "out", frames, tmp_path)
    job = jobs.start_job(passes.JOB_NAME, request, block=False, log_path=str(tmp_path / "log"))
    deadline = time.monotonic() + 120
    while job.running and job.progress is None:
        assert time.monotonic() < deadline
        jobs.pump()
        time.sleep(0.05)
    job.cancel()
    while job.running:
        assert time.monotonic() < deadline
        jobs.pump()
        time.sleep(0.05)
    assert job.state == "stopped" and job.done.status == "stopped"
    written = sorted((tmp_path / "out").glob("*.exr"))
    assert 1 <= len(written) == job.done.metrics["frames"] < len(frames)
