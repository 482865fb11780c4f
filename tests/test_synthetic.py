"""The built-in synthetic scene: complete, exact, ground truth known, and the user's scene untouched."""
from __future__ import annotations

import bpy
import numpy as np
from PIL import Image

from bridge.formats import colmap
from bridge.formats.cameras import project


def test_synthetic_scene_is_a_complete_colmap_project(synthetic_scene, splatwork):
    rec = colmap.read_model(synthetic_scene / "sparse" / "0")
    assert len(rec.views) == 24 and len(rec.points) == 3000
    (cam,) = rec.cameras.values()
    assert (cam.model, cam.width, cam.height) == ("SIMPLE_PINHOLE", 96, 72)
    assert cam.cx == 48.0 and cam.cy == 36.0
    background = np.array(splatwork.addon.reconstruction.synthetic.BACKGROUND) * 255
    for view in rec.views:
        with Image.open(synthetic_scene / "images" / view.name) as img:
            assert img.size == (96, 72) and img.mode == "RGB"
            # The sky above the scene is exactly the documented background colour.
            np.testing.assert_allclose(np.asarray(img)[0, 0], background, atol=0.6)
    # Cameras surround the scene: every azimuth quadrant has cameras, all look at the centre.
    centres = np.array([v.center() for v in rec.views])
    quadrants = {(x > 0, y > 0) for x, y in centres[:, :2]}
    assert len(quadrants) == 4
    # Colour variation, which multi-view training needs.
    assert rec.colors.astype(float).std(axis=0).min() > 25
    assert len(np.unique(rec.colors, axis=0)) > 200


def test_sparse_point_colours_are_the_rendered_pixels(synthetic_scene):
    """Ground truth: a surface point renders with exactly its texel colour wherever it is seen."""
    rec = colmap.read_model(synthetic_scene / "sparse" / "0")
    cam = rec.cameras[rec.views[0].camera_id]
    best = np.full(len(rec.points), 255)
    for view in rec.views:
        pixels = np.asarray(Image.open(synthetic_scene / "images" / view.name).convert("RGB")).astype(int)
        uv = project(cam, view, rec.points)
        inside = (uv[:, 0] >= 1) & (uv[:, 0] < cam.width - 1) & (uv[:, 1] >= 1) & (uv[:, 1] < cam.height - 1)
        diff = np.abs(pixels[uv[inside, 1].astype(int), uv[inside, 0].astype(int)] - rec.colors[inside]).max(axis=1)
        best[inside] = np.minimum(best[inside], diff)
    # The rest are hidden in every view or sit on a texel edge finer than a 96x72 pixel.
    assert np.mean(best <= 4) > 0.7


def _state():
    counts = {n: len(getattr(bpy.data, n)) for n in ("objects", "meshes", "materials", "images", "cameras",
                                                      "scenes", "worlds", "collections", "actions")}
    r = bpy.context.scene.render
    return counts, bpy.context.scene.name, (r.engine, r.resolution_x, r.resolution_y, r.filepath)


def test_making_the_scene_leaves_the_open_scene_untouched(blender_with_splatwork, splatwork, tmp_path):
    bpy.ops.mesh.primitive_cube_add()
    before = _state()
    make = splatwork.addon.reconstruction.synthetic.make_synthetic_scene
    out = make(tmp_path, n_views=3, resolution=(32, 24), samples=1, n_points=50)
    assert _state() == before
    assert sorted(p.name for p in (out / "images").iterdir()) == ["view_000.png", "view_001.png", "view_002.png"]
    assert not list(tmp_path.glob(".synthetic-*"))


def test_operator_renders_and_imports(blender_with_splatwork, tmp_path):
    result = bpy.ops.splatwork.make_synthetic_scene(directory=str(tmp_path), n_views=3, width=32, height=24,
                                                    samples=1, n_points=50)
    assert result == {"FINISHED"}
    collection = bpy.context.scene.splatwork_colmap.collection
    cameras = [o for o in collection.objects if o.type == "CAMERA"]
    assert len(cameras) == 4  # three views and the animated camera
    assert bpy.context.scene.render.resolution_x == 32
