"""Splat render passes for compositing: the bridge renders the splat objects from the scene camera.

``bpy.ops.splatwork.render_passes()`` writes, for the current frame or the frame range, one
multilayer EXR per frame (layer ``Splats``: ``Combined`` linear premultiplied RGBA, ``Depth`` Z along
the view axis as Blender's Z pass) plus a PNG preview, through ``python -m bridge render`` (see
``bridge/render.py``). Blender evaluates the animation: per frame the job carries the camera (K and
world-to-camera from ``bridge.formats.cameras``, so lens, sensor fit, shift, resolution percentage
and pixel aspect are Blender's own) and every splat object's world matrix.

``bpy.ops.splatwork.composite_splat_passes()`` builds a compositor node group that loads the
sequence and combines it with Blender's render: Z-combine against the Depth pass (default), or
alpha over (the Switch node).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import bpy
import numpy as np

from ...bridge import protocol
from ...bridge.formats import cameras, write_splats
from ...bridge.formats.transform import check_transform
from ..common import compat, jobs
from ..common.reports import failure
from ..splats import is_splat_object, object_to_splats
from ..splats.pointcloud import describe_splat_objects
from ..training import remote

JOB_NAME = "render_passes"
NODE_GROUP = "Splatwork Composite"


class RenderSetupError(ValueError):
    """The scene cannot be rendered as asked; the message tells the artist why."""


class SplatworkRenderSettings(bpy.types.PropertyGroup):
    output_dir: bpy.props.StringProperty(
        name="Output",
        description="Folder for the splat passes (<name>_<frame>.exr and .png)",
        default="//splat_passes/",
        subtype="DIR_PATH",
    )
    name: bpy.props.StringProperty(name="Name", description="File name prefix", default="splats")
    machine: remote.machine_property()
    use_frame_range: bpy.props.BoolProperty(
        name="Frame Range", description="Render the scene's frame range (off: the current frame only)",
        default=True,
    )


def settings(scene) -> SplatworkRenderSettings:
    return scene.splatwork_render


def output_folder(scene, output_dir: str = "") -> Path:
    raw = output_dir or settings(scene).output_dir
    path = bpy.path.abspath(raw)
    if path.startswith("//") or not os.path.isabs(path):
        raise RenderSetupError(f"the output folder {raw!r} is relative to an unsaved .blend file: "
                               "save the file or choose an absolute folder")
    return Path(path)


def splat_objects(view_layer) -> list:
    """The splat objects the passes show: those visible in the view layer.

    Not their render visibility: Blender's own render must leave the splats out (their preview would
    be drawn twice), so :func:`build_compositor` hides them from it.
    """
    return [o for o in view_layer.objects if is_splat_object(o) and o.visible_get(view_layer=view_layer)]


def camera_at_current_frame(scene, depsgraph) -> dict:
    """The scene camera as the bridge needs it: pinhole K, OpenCV world-to-camera, size, clip range.

    Not ``addon.colmap.camera_to_colmap``: that keeps an imported camera's own resolution, while a
    pass must match the frame Blender renders, i.e. the scene's resolution, percentage and aspect.
    """
    cam = scene.camera
    if cam is None or cam.type != "CAMERA":
        raise RenderSetupError("the scene has no camera: set Scene > Camera")
    cam = cam.evaluated_get(depsgraph)
    data, render = cam.data, scene.render
    if data.type != "PERSP":
        raise RenderSetupError(f"camera {cam.name!r} is {data.type.lower()}; splat passes need a perspective camera")
    fx, fy, cx, cy, width, height = cameras.blender_to_intrinsics(
        data.lens, data.sensor_width, data.sensor_height, data.sensor_fit, data.shift_x, data.shift_y,
        render.resolution_x, render.resolution_y, render.pixel_aspect_x, render.pixel_aspect_y,
        render.resolution_percentage,
    )
    R, t = cameras.matrix_world_to_pose(np.array(cam.matrix_world, dtype=np.float64))
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, t
    K = [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]
    return {"width": width, "height": height, "K": K, "world_to_camera": w2c.tolist(),
            "clip_start": data.clip_start, "clip_end": data.clip_end}


def write_job(scene, view_layer, output_dir: Path, frames: list[int], workdir: Path) -> protocol.RenderJob:
    """The render job for ``frames``, its splat files written to ``workdir``; checked by the protocol."""
    objects = splat_objects(view_layer)
    if not objects:
        raise RenderSetupError(f"no splat objects to render in this view layer: Splatwork looks for "
                               f"{describe_splat_objects()} visible in the viewport")
    entries, splat_sets = [], []
    for i, obj in enumerate(objects):
        path = workdir / f"object_{i}.ply"  # standard PLY: lossless, so the bridge renders exactly these
        splat_sets.append(object_to_splats(obj, apply_transform=False))
        write_splats(path, splat_sets[-1], fmt="ply")
        entries.append({"name": obj.name, "splats": str(path)})
    current = scene.frame_current
    frame_jobs = []
    try:
        for frame in frames:
            scene.frame_set(frame)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            entry = camera_at_current_frame(scene, depsgraph)
            entry["frame"] = frame
            matrices = [np.array(o.evaluated_get(depsgraph).matrix_world, dtype=np.float64) for o in objects]
            for obj, splats, matrix in zip(objects, splat_sets, matrices, strict=True):
                # Refuse here, before a bridge starts, what the bridge would refuse at this frame.
                check_transform(splats, matrix, f"frame {frame}, object {obj.name!r}")
            entry["object_matrices"] = [m.tolist() for m in matrices]
            frame_jobs.append(entry)
    finally:
        scene.frame_set(current)
    job = {"output_dir": str(output_dir), "name": settings(scene).name or "splats",
           "objects": entries, "frames": frame_jobs}
    try:
        return protocol.job_from_dict(protocol.RenderJob, job)
    except protocol.JobError as exc:  # e.g. a frame over the size limit: refused before a bridge starts
        raise RenderSetupError(f"{exc.message}. {exc.hint}") from None


def _frames(scene, use_frame_range: bool) -> list[int]:
    if not use_frame_range:
        return [scene.frame_current]
    return list(range(scene.frame_start, scene.frame_end + 1, max(1, scene.frame_step)))


# ---------------------------------------------------------------------------------------------
# Compositor


def sequence_in(folder: Path, name: str) -> tuple[Path, int, int]:
    """(first file, first frame, frame count) of the ``<name>_<frame>.exr`` sequence in ``folder``."""
    pattern = re.compile(re.escape(name) + r"_(-?\d+)\.exr$")
    found = sorted((int(m.group(1)), p) for p in folder.glob(f"{name}_*.exr") if (m := pattern.match(p.name)))
    if not found:
        raise RenderSetupError(f"no splat passes named {name}_<frame>.exr in {folder}: render them first")
    return found[0][1], found[0][0], found[-1][0] - found[0][0] + 1


def build_compositor(scene, view_layer, folder: Path, name: str):
    """The scene's compositor as a node group that puts the splat passes together with the render."""
    first, start, count = sequence_in(folder, name)
    view_layer.use_pass_z = True  # the Z-combine needs Blender's depth
    tree = bpy.data.node_groups.get(NODE_GROUP)
    if tree is None or tree.bl_idname != "CompositorNodeTree":
        tree = bpy.data.node_groups.new(NODE_GROUP, "CompositorNodeTree")
    tree.nodes.clear()  # the group is ours: rebuilt whole, it always matches the passes on disk
    if not any(i.in_out == "OUTPUT" and i.name == "Image" for i in tree.interface.items_tree):
        tree.interface.new_socket(name="Image", in_out="OUTPUT", socket_type="NodeSocketColor")

    image = bpy.data.images.load(str(first), check_existing=True)
    image.source = "SEQUENCE"
    image.reload()
    nodes, links = tree.nodes, tree.links
    render = nodes.new("CompositorNodeRLayers")
    render.scene, render.layer, render.location = scene, view_layer.name, (-500, 150)
    splats = nodes.new("CompositorNodeImage")
    splats.image, splats.label, splats.location = image, "Splat passes", (-500, -250)
    # Blender shows sequence image number (frame - frame_start + offset + 1); the files are numbered by
    # frame, so the offset makes image number and frame number the same.
    splats.frame_start, splats.frame_duration, splats.frame_offset = start, count, start - 1
    splats.use_auto_refresh = True

    zcombine = nodes.new("CompositorNodeZcombine")
    zcombine.location = (-100, 150)
    zcombine.inputs["Use Alpha"].default_value = True
    links.new(render.outputs["Image"], zcombine.inputs["A"])
    links.new(render.outputs["Depth"], zcombine.inputs["Depth A"])
    links.new(splats.outputs["Combined"], zcombine.inputs["B"])
    links.new(splats.outputs["Depth"], zcombine.inputs["Depth B"])

    over = nodes.new("CompositorNodeAlphaOver")
    over.location = (-100, -150)
    links.new(render.outputs["Image"], over.inputs["Background"])
    links.new(splats.outputs["Combined"], over.inputs["Foreground"])

    switch = nodes.new("CompositorNodeSwitch")
    switch.label, switch.location = "Z-combine (off: alpha over)", (150, 0)
    switch.inputs["Switch"].default_value = True
    links.new(over.outputs["Image"], switch.inputs["Off"])
    links.new(zcombine.outputs["Result"], switch.inputs["On"])
    output = nodes.new("NodeGroupOutput")
    output.location = (400, 0)
    links.new(switch.outputs["Image"], output.inputs["Image"])
    viewer = nodes.new("CompositorNodeViewer")
    viewer.location = (400, -200)
    links.new(switch.outputs["Image"], viewer.inputs["Image"])

    compat.set_compositing_tree(scene, tree)
    scene.render.use_compositing = True
    # The passes carry the splats; drawn by Blender's render too they would show twice.
    for obj in splat_objects(view_layer):
        obj.hide_render = True
    return tree


# ---------------------------------------------------------------------------------------------
# Operators and panel


class SPLATWORK_OT_render_passes(bpy.types.Operator):
    """Render the splat objects from the scene camera into multilayer EXR passes for compositing"""

    bl_idname = "splatwork.render_passes"
    bl_label = "Render Splat Passes"
    bl_options = {"REGISTER"}

    output_dir: bpy.props.StringProperty(name="Output", description="Folder (empty: the scene's setting)",
                                         subtype="DIR_PATH", options={"PATH_SUPPORTS_BLEND_RELATIVE"})
    use_frame_range: bpy.props.BoolProperty(name="Frame Range", default=True,
                                            description="Render the frame range (off: the current frame)")
    composite: bpy.props.BoolProperty(name="Build Compositor", default=False,
                                      description="When done, build the compositor node setup")

    def invoke(self, context, event):
        self.use_frame_range = settings(context.scene).use_frame_range
        return self.execute(context)

    def execute(self, context):
        scene, view_layer = context.scene, context.view_layer
        workdir = Path(tempfile.mkdtemp(prefix="splatwork-render-"))
        try:
            folder = output_folder(scene, self.output_dir)
            request = write_job(scene, view_layer, folder, _frames(scene, self.use_frame_range), workdir)
        # Every "this scene cannot be rendered" problem (setup, splat layout, camera, transform) is a
        # ValueError; OSError: the temporary job folder could not be written.
        except Exception as exc:  # noqa: BLE001 - operators report, never raise
            shutil.rmtree(workdir, ignore_errors=True)
            self.report({"ERROR"}, f"Splat passes: {failure(exc)}")
            return {"CANCELLED"}

        name = settings(scene).name or "splats"
        scene_name, layer_name, composite = scene.name, view_layer.name, self.composite

        def on_finish(job):
            shutil.rmtree(workdir, ignore_errors=True)
            # Looked up again: in the UI the job ends later, when the scene may have changed.
            target = bpy.data.scenes.get(scene_name)
            layer = target.view_layers.get(layer_name) if target is not None else None
            if composite and job.state == "completed" and layer is not None:
                build_compositor(target, layer, folder, name)

        try:
            job = jobs.start_job(JOB_NAME, request, on_finish=on_finish,
                                 machine=remote.machine_named(settings(scene).machine))
        except jobs.StartError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            self.report({"ERROR"}, f"{exc.message}. {exc.hint}".strip())
            return {"CANCELLED"}
        if job.running:
            self.report({"INFO"}, f"Rendering splat passes to {folder}")
            return {"FINISHED"}
        if job.state == "failed":
            self.report({"ERROR"}, job.message())
            return {"CANCELLED"}
        frames = (job.done.metrics.get("frames", 0) if job.done else 0)
        self.report({"INFO"}, f"Splat passes {job.state}: {frames} frame(s) in {folder}")
        return {"FINISHED"}


class SPLATWORK_OT_composite_splat_passes(bpy.types.Operator):
    """Build a compositor setup that loads the splat passes and combines them with Blender's render"""

    bl_idname = "splatwork.composite_splat_passes"
    bl_label = "Composite Splat Passes"
    bl_options = {"REGISTER", "UNDO"}

    output_dir: bpy.props.StringProperty(name="Folder", description="Folder of the passes (empty: the "
                                         "scene's setting)", subtype="DIR_PATH",
                                         options={"PATH_SUPPORTS_BLEND_RELATIVE"})

    def execute(self, context):
        scene = context.scene
        try:
            folder = output_folder(scene, self.output_dir)
            build_compositor(scene, context.view_layer, folder, settings(scene).name or "splats")
        except Exception as exc:  # noqa: BLE001 - operators report, never raise
            self.report({"ERROR"}, f"Splat compositing: {failure(exc)}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Compositor set up with the splat passes of {folder}")
        return {"FINISHED"}


class SPLATWORK_PT_render_passes(bpy.types.Panel):
    bl_label = "Render Passes"
    bl_idname = "SPLATWORK_PT_render_passes"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Splatwork"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        props = settings(context.scene)
        layout.prop(props, "output_dir")
        layout.prop(props, "name")
        layout.prop(props, "use_frame_range")
        layout.prop(props, "machine", icon="NETWORK_DRIVE")
        job = jobs.get_job(JOB_NAME)
        if job is not None and job.running:
            layout.label(text=job.status_line())
            layout.operator("splatwork.cancel_job", text="Cancel", icon="CANCEL").name = JOB_NAME
        else:
            op = layout.operator(SPLATWORK_OT_render_passes.bl_idname, icon="RENDER_ANIMATION")
            op.use_frame_range = props.use_frame_range
            if job is not None and job.state == "failed":
                layout.label(text=job.message(), icon="ERROR")
        layout.operator(SPLATWORK_OT_composite_splat_passes.bl_idname, icon="NODE_COMPOSITING")


_classes = (SplatworkRenderSettings, SPLATWORK_OT_render_passes, SPLATWORK_OT_composite_splat_passes,
            SPLATWORK_PT_render_passes)


def register() -> None:
    for cls in _classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.splatwork_render = bpy.props.PointerProperty(type=SplatworkRenderSettings)


def unregister() -> None:
    del bpy.types.Scene.splatwork_render
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
