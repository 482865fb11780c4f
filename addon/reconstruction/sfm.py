"""Reconstruct from photos: structure from motion in a bridge process, then the COLMAP import.

``bpy.ops.splatwork.reconstruct(images_dir=..., out_dir=...)`` runs ``python -m bridge sfm`` through
:mod:`.jobs` (live progress and Cancel in the UI, blocking under ``--background``) and, when it
completes, imports the undistorted model with ``bpy.ops.splatwork.import_colmap`` and points the
training panel at it. Settings not passed to the operator come from ``scene.splatwork_reconstruct``,
which the "Reconstruct" panel in the Splatwork sidebar edits.
"""
from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, PointerProperty, StringProperty

from ...bridge import protocol
from ...bridge.protocol.jobs import panel_fields
from ..common import jobs
from ..common.options import job_properties
from ..training import remote

JOB_NAME = "reconstruct"

_SOURCE_ITEMS = [("PHOTOS", "Photos", "A folder of overlapping photos"),
                 ("VIDEO", "Video", "A video file; every Nth frame is used")]
def _settings_fields():
    """The settings shared by the scene panel and the operator (one definition for both)."""
    return {
        "source": EnumProperty(name="Source", items=_SOURCE_ITEMS, default="PHOTOS"),
        "images_dir": StringProperty(name="Photos", subtype="DIR_PATH",
                                     description="Folder of photos (subfolders are not read)"),
        "video_path": StringProperty(name="Video", subtype="FILE_PATH", description="Video file"),
        "out_dir": StringProperty(name="Output", subtype="DIR_PATH",
                                  description="New or empty folder for the cameras, points and undistorted "
                                  "photos; empty: a folder next to the .blend file"),
        # The job's max_size is None when Quality decides; a Blender int has no None, so 0 stands for it.
        "max_size": IntProperty(name="Working Size", default=0, min=0, max=16384, subtype="PIXEL",
                                description="Longest side in pixels; 0: set by Quality"),
        # SfM's own options, made from the SfmJob fields (label, tooltip, bounds, choices)
        **job_properties(protocol.SfmJob, panel_fields(protocol.SfmJob)),
        "machine": remote.machine_property(),
    }


_FIELDS = tuple(_settings_fields())


class SPLATWORK_PG_reconstruct(bpy.types.PropertyGroup):
    __annotations__ = {
        **_settings_fields(),
        # the last run, written by the job's callbacks
        "state": StringProperty(name="State"),  # "", running, completed, stopped, failed, killed
        "message": StringProperty(name="Message"),
        "warning": StringProperty(name="Warning"),
        "model_dir": StringProperty(name="Model", subtype="DIR_PATH"),
        "images_out": StringProperty(name="Images", subtype="DIR_PATH"),
    }


class SPLATWORK_OT_reconstruct(bpy.types.Operator):
    """Find the cameras of overlapping photos or video frames (structure from motion) and import them, ready to train"""

    bl_idname = "splatwork.reconstruct"
    bl_label = "Reconstruct from Photos"
    # No UNDO: "Adjust Last Operation" would re-run a job of minutes; the import pushes its own step.
    bl_options = {"REGISTER"}

    __annotations__ = {
        **_settings_fields(),
        "import_result": BoolProperty(name="Import Result", default=True,
                                      description="Import the cameras and points when done"),
        "z_up": BoolProperty(name="Z Up, Centred", default=True,
                             description="Import with the cameras' up as +Z, centred on the points "
                             "(SfM's own axes are arbitrary)"),
        "threads": IntProperty(name="Threads", default=-1, min=-1, options={"HIDDEN"}),
        "wait": EnumProperty(
            name="Wait", options={"HIDDEN", "SKIP_SAVE"}, default="AUTO",
            items=[("AUTO", "Automatic", "Wait for the result in background mode only"),
                   ("YES", "Wait", "Return when the reconstruction has ended"),
                   ("NO", "Don't Wait", "Return at once; the result is imported when it is ready")]),
    }

    @classmethod
    def poll(cls, context):
        job = jobs.get_job(JOB_NAME)
        if job is not None and job.running:
            cls.poll_message_set("A reconstruction is already running")
            return False
        return True

    def execute(self, context):
        settings = context.scene.splatwork_reconstruct
        for name in _FIELDS:  # arguments given to the operator win; the rest come from the panel
            if not self.properties.is_property_set(name):
                setattr(self, name, getattr(settings, name))
        try:
            request = self._job()
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        settings.state, settings.message, settings.warning = "running", "", ""
        scene_name, import_result, z_up = context.scene.name, self.import_result, self.z_up
        try:
            job = jobs.start_job(JOB_NAME, request, machine=remote.machine_named(self.machine),
                                 on_finish=lambda job: _finish(job, scene_name, import_result, z_up),
                                 block=None if self.wait == "AUTO" else self.wait == "YES")
        except jobs.StartError as exc:
            settings.state = "failed"
            settings.message = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
            self.report({"ERROR"}, settings.message)
            return {"CANCELLED"}
        if job.running:
            self.report({"INFO"}, "Reconstruction started; progress is in the Splatwork sidebar and the status bar")
            return {"FINISHED"}
        # Blocking (background) run: it has ended and _finish has imported the result.
        if settings.state != "completed":
            level = "WARNING" if settings.state == "stopped" else "ERROR"
            self.report({level}, settings.message)
            return {"CANCELLED"}
        if settings.warning:
            self.report({"WARNING"}, settings.warning)
        self.report({"INFO"}, settings.message)
        return {"FINISHED"}

    def _job(self) -> protocol.SfmJob:
        out_dir = _absolute(self.out_dir) or _default_out_dir(self)
        if not out_dir:
            raise ValueError("Choose an output folder (or save the .blend file: the result then goes next to it)")
        source: dict = {}
        if self.source == "VIDEO":
            video = _absolute(self.video_path)
            if not video or not os.path.isfile(video):
                raise ValueError(f"Video file not found: '{video or self.video_path}'")
            source = {"video": video, "every": self.every}
        else:
            images = _absolute(self.images_dir)
            if not images or not os.path.isdir(images):
                raise ValueError(f"Photo folder not found: '{images or self.images_dir}'")
            if os.path.abspath(images) == os.path.abspath(out_dir):
                raise ValueError("The output folder must not be the photo folder")
            source = {"images": images}
        try:
            return protocol.job_from_dict(protocol.SfmJob, {
                **source, "out": out_dir, "quality": self.quality, "camera": self.camera, "matcher": self.matcher,
                "mapper": self.mapper, "threads": self.threads, "max_size": self.max_size or None})
        except protocol.JobError as exc:  # a ValueError to the caller, like every other bad setting
            raise ValueError(f"{exc.message} ({exc.hint})") from None


def _absolute(path: str) -> str:
    return os.path.normpath(bpy.path.abspath(path)) if path else ""


def _default_out_dir(op) -> str:
    if not bpy.data.filepath:
        return ""
    source = op.video_path if op.source == "VIDEO" else op.images_dir.rstrip("/\\")
    stem = os.path.splitext(os.path.basename(_absolute(source)))[0] or "photos"
    return os.path.join(os.path.dirname(bpy.data.filepath), f"{stem}_reconstruction")


def _finish(job: jobs.Job, scene_name: str, import_result: bool, z_up: bool) -> None:
    """The job has ended (main thread): record the outcome and import a completed result."""
    scene = bpy.data.scenes.get(scene_name)
    if scene is None:  # the scene went away while the job ran
        return
    settings = scene.splatwork_reconstruct
    settings.state = job.state
    settings.warning = "; ".join(job.warnings)
    if job.state == "stopped":
        settings.message = "Reconstruction cancelled; nothing was imported"
        return
    if job.state != "completed" or job.done is None:
        settings.message = job.message() or f"Reconstruction {job.state}"
        return
    done: protocol.Done = job.done
    settings.model_dir = done.outputs.get("sparse", "")
    settings.images_out = done.outputs.get("images", "")
    m = done.metrics
    settings.message = (f"{m.get('registered', '?')} of {m.get('photos', '?')} photos placed, "
                        f"{m.get('points', 0):,} points, reprojection error "
                        f"{m.get('mean_reprojection_error', 0):.2f} px")
    if import_result:
        error = _import_result(scene, settings.model_dir, settings.images_out, z_up)
        if error:
            settings.state = "failed"
            settings.message = (f"Reconstruction finished in {done.outputs.get('sparse')}, "
                                f"but the import failed: {error}")


def _import_result(scene, model_dir: str, images_dir: str, z_up: bool) -> str:
    """Import with the COLMAP importer and hand the cameras to training; returns an error or ""."""
    if not hasattr(bpy.types, "SPLATWORK_OT_import_colmap"):
        return "the COLMAP importer (splatwork.import_colmap) is not available"
    previous = scene.splatwork_colmap.collection
    try:
        # The job may end in a timer, where the context has no scene of its own to import into.
        with bpy.context.temp_override(scene=scene):
            result = bpy.ops.splatwork.import_colmap(
                model_dir=model_dir, images_dir=images_dir, world="UP_CENTERED" if z_up else "KEEP")
    except RuntimeError as exc:  # the importer's own report, raised by bpy.ops
        return str(exc).strip()
    collection = scene.splatwork_colmap.collection
    if result != {"FINISHED"} or collection is None or collection == previous:
        return "the COLMAP importer did not import the model"
    training = getattr(scene, "splatwork_training", None)
    if training is not None:
        training.source = "COLLECTION"
        training.collection = collection
    return ""


class SPLATWORK_PT_reconstruct(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Splatwork"
    bl_label = "Reconstruct from Photos"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        settings = context.scene.splatwork_reconstruct
        job = jobs.get_job(JOB_NAME)
        running = job is not None and job.running

        col = layout.column()
        col.enabled = not running
        col.row().prop(settings, "source", expand=True)
        if settings.source == "VIDEO":
            col.prop(settings, "video_path")
            col.prop(settings, "every")
        else:
            col.prop(settings, "images_dir")
        col.prop(settings, "out_dir")
        col.prop(settings, "machine", icon="NETWORK_DRIVE")
        col.prop(settings, "quality")
        col.prop(settings, "camera")
        sub = col.column(heading="Advanced")
        sub.prop(settings, "matcher")
        sub.prop(settings, "mapper")
        sub.prop(settings, "max_size")

        if running:
            row = layout.row(align=True)
            row.progress(factor=job.fraction(), type="BAR", text=_progress_text(job))
            row.operator("splatwork.cancel_job", text="", icon="X").name = JOB_NAME
        else:
            layout.operator(SPLATWORK_OT_reconstruct.bl_idname, icon="CAMERA_DATA")
        if settings.state == "running" and not running:
            layout.label(text="The last reconstruction was interrupted", icon="ERROR")
        elif settings.state and not running:
            icon = {"completed": "CHECKMARK", "stopped": "CANCEL"}.get(settings.state, "ERROR")
            box = layout.box()
            for line in _wrap(settings.message, 48):
                box.label(text=line, icon=icon)
                icon = "BLANK1"
            if settings.warning:
                for line in _wrap(settings.warning, 48)[:4]:
                    box.label(text=line, icon="INFO")
            if job is not None:
                box.operator("splatwork.open_job_log", text="Open Log", icon="TEXT").name = JOB_NAME


_STAGE_LABELS = {"loading_images": "Reading photos", "extracting_features": "Finding features",
                 "matching": "Matching", "mapping": "Placing cameras", "undistorting": "Undistorting"}


def _progress_text(job: jobs.Job) -> str:
    text = _STAGE_LABELS.get(job.stage, job.stage.replace("_", " ").capitalize())
    p = job.progress
    if p is not None and p.stage == job.stage:
        text += f" {p.step}/{p.total}"
        if p.images_registered is not None:
            text += f" · {p.images_registered} placed"
    return text


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


_classes = (SPLATWORK_PG_reconstruct, SPLATWORK_OT_reconstruct, SPLATWORK_PT_reconstruct)


def register():
    for cls in _classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.splatwork_reconstruct = PointerProperty(type=SPLATWORK_PG_reconstruct)


def unregister():
    del bpy.types.Scene.splatwork_reconstruct
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
