"""Train, Cancel and open the output folder; Resume is Train with ``resume=True``."""
from __future__ import annotations

import os

import bpy

from ..common import jobs
from .run import JOB_NAME, TrainingError, start_training


def training_job() -> jobs.Job | None:
    job = jobs.get_job(JOB_NAME)
    return job if job is not None and job.running else None


class SPLATWORK_OT_train(bpy.types.Operator):
    """Train Gaussian splats from the dataset in the bridge process; the splats appear in the scene as they train"""

    bl_idname = "splatwork.train"
    bl_label = "Train Splats"
    bl_options = {"REGISTER"}  # objects appear later, from the job's events: there is nothing to undo now

    resume: bpy.props.BoolProperty(name="Resume", description="Continue the last run from its checkpoint")

    @classmethod
    def poll(cls, context):
        if training_job() is not None:
            cls.poll_message_set("Training is already running")
            return False
        return context.scene is not None

    def execute(self, context):
        try:
            job = start_training(context.scene, resume=self.resume)
        except TrainingError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if job.running:
            self.report({"INFO"}, f"Training started; log: {job.log_path}")
            return {"FINISHED"}
        # Blocking (--background): the run is over.
        settings = context.scene.splatwork_training
        if job.state in ("failed", "killed"):
            self.report({"ERROR"}, job.message() or f"training {job.state}. Log: {job.log_path}")
            return {"CANCELLED"}
        psnr = f", held-out PSNR {settings.eval_psnr:.2f} dB" if settings.eval_psnr else ""
        self.report({"INFO"}, f"Training {job.state} at step {settings.step}: {settings.num_splats:,} splats{psnr}")
        return {"FINISHED"}


class SPLATWORK_OT_train_cancel(bpy.types.Operator):
    """Stop training: the bridge saves what it has trained, and those splats are imported"""

    bl_idname = "splatwork.train_cancel"
    bl_label = "Cancel Training"

    @classmethod
    def poll(cls, context):
        return training_job() is not None

    def execute(self, context):
        training_job().cancel()
        context.scene.splatwork_training.stage = "stopping"
        return {"FINISHED"}


class SPLATWORK_OT_open_training_output(bpy.types.Operator):
    """Open the training output folder (splats, checkpoints, previews, metrics, log) in the file browser"""

    bl_idname = "splatwork.open_training_output"
    bl_label = "Open Output Folder"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        folder = context.scene.splatwork_training.run_dir
        if not folder or not os.path.isdir(folder):
            self.report({"ERROR"}, f"Output folder '{folder}' not found")
            return {"CANCELLED"}
        bpy.ops.wm.path_open(filepath=folder)
        return {"FINISHED"}


_classes = (SPLATWORK_OT_train, SPLATWORK_OT_train_cancel, SPLATWORK_OT_open_training_output)


def register() -> None:
    for cls in _classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
