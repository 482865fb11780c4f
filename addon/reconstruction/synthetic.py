"""The built-in synthetic scene: a textured scene rendered from cameras around it, with exact COLMAP data.

Surfaces are emission shaders of numpy-made textures, so a pixel's colour is the texture's sRGB
value (view transform "Standard"), independent of view and free of lighting noise: a clean,
ground-truth-known training target. Sparse points are sampled on the surfaces with the colour of the
texel under them. Everything is built in a temporary scene and removed afterwards: the user's open
scene is never touched.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import bmesh
import bpy
import numpy as np
from bpy.props import BoolProperty, IntProperty, StringProperty
from mathutils import Matrix, Vector

from ...bridge.formats import colmap
from ...bridge.formats.cameras import Reconstruction
from ..cameras.build import CreatedData
from ..cameras.exporting import cameras_to_reconstruction
from ..common.reports import failure

BACKGROUND = (0.55, 0.62, 0.70)  # sRGB of the world behind the scene
TARGET = Vector((0.0, 0.0, 0.35))  # where every camera looks


def _texture(rng: np.random.Generator, tiles: int, size: int = 128, muted: bool = False) -> np.ndarray:
    """(size, size, 3) uint8: tiles of random hues with a dark grid and a gradient, so every part of
    a surface is distinguishable (what multi-view training needs)."""
    hues = rng.uniform(0, 1, (tiles, tiles))
    sat = rng.uniform(0.3, 0.5, (tiles, tiles)) if muted else rng.uniform(0.6, 1.0, (tiles, tiles))
    val = rng.uniform(0.55, 0.95, (tiles, tiles))
    idx = np.arange(size) * tiles // size
    h, s, v = (a[idx][:, idx] for a in (hues, sat, val))
    v = v * (0.8 + 0.2 * np.linspace(0, 1, size))[None, :]
    rgb = _hsv_to_rgb(h, s, v)
    line = (np.arange(size) % (size // tiles)) < max(1, size // (tiles * 8))
    rgb[line, :] *= 0.25
    rgb[:, line] *= 0.25
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _hsv_to_rgb(h, s, v):
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(h.shape + (3,))
    for k, (r, g, b) in enumerate(table):
        mask = i == k
        out[mask] = np.stack([r[mask], g[mask], b[mask]], axis=-1)
    return out


class _Scratch(CreatedData):
    """The temporary scene and every data-block made for it, removed together."""

    def __init__(self, name: str):
        super().__init__()
        self.scene = self.add(bpy.data.scenes.new(name))


def _image(scratch: _Scratch, name: str, pixels: np.ndarray):
    h, w, _ = pixels.shape
    image = scratch.add(bpy.data.images.new(name, w, h, alpha=False))
    rgba = np.ones((h, w, 4), np.float32)
    rgba[..., :3] = pixels[::-1] / 255.0  # Blender stores the bottom row first
    image.pixels.foreach_set(rgba.reshape(-1))
    image.pack()
    return image


def _material(scratch: _Scratch, name: str, image):
    mat = scratch.add(bpy.data.materials.new(name))
    if mat.node_tree is None:
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    for node in [n for n in nodes if n.type != "OUTPUT_MATERIAL"]:
        nodes.remove(node)
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.interpolation = "Closest"  # a texel's colour is exactly what the sampled points carry
    emission = nodes.new("ShaderNodeEmission")
    links.new(tex.outputs["Color"], emission.inputs["Color"])
    output = next(n for n in nodes if n.type == "OUTPUT_MATERIAL")
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return mat


def _mesh_object(scratch, name, build, matrix, texture):
    mesh = scratch.add(bpy.data.meshes.new(name))
    bm = bmesh.new()
    bm.loops.layers.uv.new("UVMap")  # calc_uvs fills the UV layer that exists
    build(bm)
    bm.to_mesh(mesh)
    bm.free()
    mesh.materials.append(_material(scratch, name, _image(scratch, name, texture)))
    obj = scratch.add(bpy.data.objects.new(name, mesh))
    obj.matrix_world = matrix
    scratch.scene.collection.objects.link(obj)
    return obj, texture


def _build_objects(scratch: _Scratch, rng: np.random.Generator):
    uv = {"calc_uvs": True}
    specs = [
        ("ground", lambda bm: bmesh.ops.create_grid(bm, x_segments=1, y_segments=1, size=1.6, **uv),
         Matrix.Identity(4), _texture(rng, 12, muted=True)),
        ("cube", lambda bm: bmesh.ops.create_cube(bm, size=0.6, **uv),
         Matrix.LocRotScale(Vector((-0.5, 0.35, 0.3)), Matrix.Rotation(0.5, 3, "Z").to_quaternion(), None),
         _texture(rng, 6)),
        ("sphere", lambda bm: bmesh.ops.create_uvsphere(bm, u_segments=32, v_segments=16, radius=0.38, **uv),
         Matrix.Translation((0.55, -0.15, 0.38)), _texture(rng, 8)),
        ("cone", lambda bm: bmesh.ops.create_cone(bm, cap_ends=True, segments=24, radius1=0.3, radius2=0.05,
                                                    depth=0.8, **uv),
         Matrix.Translation((-0.1, -0.65, 0.4)), _texture(rng, 6)),
    ]
    return [_mesh_object(scratch, name, build, matrix, tex) for name, build, matrix, tex in specs]


def _sample_surface(objects, n_points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Points spread uniformly by area over the surfaces a camera can see, with the texel colour under each."""
    tris, uvs, colors_of = [], [], []
    for obj, texture in objects:
        mesh = obj.data
        mesh.calc_loop_triangles()
        n = len(mesh.loop_triangles)
        loops = np.empty(n * 3, np.int32)
        mesh.loop_triangles.foreach_get("loops", loops)
        verts = np.empty(n * 3, np.int32)
        mesh.loop_triangles.foreach_get("vertices", verts)
        co = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
        m = np.array(obj.matrix_world)
        world = co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
        loop_uv = np.empty(len(mesh.loops) * 2, np.float32)
        mesh.uv_layers.active.data.foreach_get("uv", loop_uv)
        tris.append(world[verts].reshape(n, 3, 3))
        uvs.append(loop_uv.reshape(-1, 2)[loops].reshape(n, 3, 2))
        colors_of += [texture] * n
    tris, uvs = np.concatenate(tris), np.concatenate(uvs)
    normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    area = 0.5 * np.linalg.norm(normals, axis=1)
    # Faces looking down (the cube's base, the cone's cap) rest on the ground: no camera sees them.
    area[normals[:, 2] < -0.5 * np.linalg.norm(normals, axis=1)] = 0.0
    pick = rng.choice(len(tris), size=n_points, p=area / area.sum())
    a, b = rng.uniform(size=(2, n_points))
    flip = a + b > 1
    a[flip], b[flip] = 1 - a[flip], 1 - b[flip]
    bary = np.stack([1 - a - b, a, b], axis=1)[:, :, None]
    points = np.sum(tris[pick] * bary, axis=1)
    uv = np.sum(uvs[pick] * bary, axis=1)
    colors = np.empty((n_points, 3), np.uint8)
    for i, (tri, (u, v)) in enumerate(zip(pick, uv, strict=True)):
        tex = colors_of[tri]
        size = tex.shape[0]
        colors[i] = tex[size - 1 - min(int(v * size), size - 1), min(int(u * size), size - 1)]
    return points, colors


def _cameras(scratch: _Scratch, n_views: int, lens: float):
    cams = []
    for i in range(n_views):
        azimuth = 2 * np.pi * i / n_views
        elevation = np.radians((20.0, 35.0, 50.0)[i % 3])
        radius = 3.0
        location = TARGET + Vector((radius * np.cos(elevation) * np.cos(azimuth),
                                    radius * np.cos(elevation) * np.sin(azimuth), radius * np.sin(elevation)))
        data = scratch.add(bpy.data.cameras.new(f"view_{i:03d}"))
        data.lens = lens
        obj = scratch.add(bpy.data.objects.new(f"view_{i:03d}", data))
        rotation = (TARGET - location).to_track_quat("-Z", "Y")
        obj.matrix_world = Matrix.LocRotScale(location, rotation, None)
        scratch.scene.collection.objects.link(obj)
        cams.append(obj)
    return cams


def _setup_render(scene, resolution: tuple[int, int], samples: int, scratch: _Scratch) -> None:
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.max_bounces = 0  # emission only: nothing to bounce
    scene.render.use_persistent_data = True  # keep the synced scene between the views
    scene.render.resolution_x, scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.display_settings.display_device = "sRGB"
    world = scratch.add(bpy.data.worlds.new("splatwork synthetic"))
    # The exact inverse of the sRGB curve the "Standard" view applies, so BACKGROUND is what renders.
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in BACKGROUND]
    world.color = linear
    background = world.node_tree.nodes.get("Background") if world.node_tree else None
    if background is not None:  # Blender 5 worlds render their node tree, not world.color
        background.inputs["Color"].default_value = (*linear, 1.0)
    scene.world = world


def make_synthetic_scene(out_dir: str | os.PathLike, n_views: int = 24, resolution: tuple[int, int] = (96, 72),
                         samples: int = 4, n_points: int = 3000, seed: int = 0, lens: float = 30.0) -> Path:
    """Render the synthetic scene into ``out_dir``: ``images/view_NNN.png`` and ``sparse/0`` (COLMAP,
    binary), poses and intrinsics exact. Returns ``out_dir``. Existing images/ and sparse/ there are
    replaced only once the new ones are complete."""
    if n_views < 2 or n_points < 1 or min(resolution) < 8 or samples < 1:
        raise ValueError(f"need n_views >= 2, n_points >= 1, resolution >= 8 px and samples >= 1; got "
                         f"{n_views}, {n_points}, {resolution}, {samples}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    work = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=out))
    scratch = _Scratch("splatwork synthetic")
    had_render_result = any(img.type == "RENDER_RESULT" for img in bpy.data.images)
    try:
        scene = scratch.scene
        _setup_render(scene, resolution, samples, scratch)
        objects = _build_objects(scratch, rng)
        cams = _cameras(scratch, n_views, lens)
        (work / "images").mkdir()
        for cam in cams:
            scene.camera = cam
            scene.render.filepath = str(work / "images" / f"{cam.name}.png")
            bpy.ops.render.render(write_still=True, scene=scene.name)
        rec = cameras_to_reconstruction(cams, scene, use_import_transform=False)
        points, colors = _sample_surface(objects, n_points, rng)
        rec = Reconstruction(rec.cameras, rec.views, points, colors, np.zeros(n_points), np.zeros(n_points, int))
        colmap.write_model(rec, work / "sparse" / "0")
        for part in ("images", "sparse"):
            if (out / part).exists():
                shutil.rmtree(out / part)
            os.replace(work / part, out / part)
    finally:
        scratch.remove_all()
        if not had_render_result:  # rendering made Blender's "Render Result" image; it was not there before
            for img in [i for i in bpy.data.images if i.type == "RENDER_RESULT"]:
                bpy.data.images.remove(img)
        shutil.rmtree(work, ignore_errors=True)
    return out


class SPLATWORK_OT_make_synthetic_scene(bpy.types.Operator):
    """Render the built-in synthetic scene (images + exact COLMAP model) and import its cameras"""

    bl_idname = "splatwork.make_synthetic_scene"
    bl_label = "Make Synthetic Scene"
    bl_options = {"REGISTER", "UNDO"}

    directory: StringProperty(name="Folder", subtype="DIR_PATH")
    n_views: IntProperty(name="Views", default=24, min=2, max=1000)
    width: IntProperty(name="Width", default=96, min=8, max=8192)
    height: IntProperty(name="Height", default=72, min=8, max=8192)
    samples: IntProperty(name="Samples", default=4, min=1, max=4096)
    n_points: IntProperty(name="Sparse Points", default=3000, min=1, max=10_000_000)
    seed: IntProperty(name="Seed", default=0, min=0)
    import_result: BoolProperty(name="Import Cameras", default=True)

    def invoke(self, context, _event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        if not self.directory:
            self.report({"ERROR"}, "no output folder given")
            return {"CANCELLED"}
        out = Path(bpy.path.abspath(self.directory))
        try:
            make_synthetic_scene(out, self.n_views, (self.width, self.height), self.samples, self.n_points, self.seed)
        except Exception as exc:  # noqa: BLE001 - operators report, never raise
            self.report({"ERROR"}, f"synthetic scene failed: {failure(exc)}")
            return {"CANCELLED"}
        if self.import_result:
            return bpy.ops.splatwork.import_colmap(model_dir=str(out / "sparse" / "0"),
                                                   images_dir=str(out / "images"))
        self.report({"INFO"}, f"Synthetic scene written to {out}")
        return {"FINISHED"}


def register():
    bpy.utils.register_class(SPLATWORK_OT_make_synthetic_scene)


def unregister():
    bpy.utils.unregister_class(SPLATWORK_OT_make_synthetic_scene)
