"""The Training panel in the 3D viewport's sidebar (N panel > Splatwork)."""
from __future__ import annotations

import os

import bpy

from ...bridge.protocol import TrainJob
from ...bridge.protocol.jobs import panel_fields
from ..common import jobs
from ..setup import runtime
from .operators import training_job
from .run import PREVIEW_IMAGE, checkpoint_path, output_dir


class VIEW3D_PT_splatwork_training(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Splatwork"
    bl_label = "Training"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.splatwork_training
        job = training_job()
        problem = "" if settings.machine else runtime.bridge_python_problem()  # a remote run needs none here
        if problem:
            box = layout.box()
            box.alert = True
            box.label(text=problem, icon="ERROR")
            box.operator("preferences.addon_show", text="Open Preferences").module = runtime.ADDON_ID

        col = layout.column()
        col.enabled = job is None
        col.prop(settings, "source")
        col.prop(settings, "collection" if settings.source == "COLLECTION" else "folder")
        col.prop(settings, "preset")
        for name in panel_fields(TrainJob, "main"):  # the job's own options: defined once, in the job
            col.prop(settings, name)
        col.prop(settings, "machine", icon="NETWORK_DRIVE")
        col.prop(settings, "output_dir")

        row = layout.row(align=True)
        if job is not None:
            row.operator("splatwork.train_cancel", icon="CANCEL")
        else:
            row.operator("splatwork.train", icon="PLAY").resume = False
            resume = row.row(align=True)
            resume.enabled = _can_resume(settings)
            resume.operator("splatwork.train", text="Resume", icon="RECOVER_LAST").resume = True

        if job is not None:
            self._draw_progress(layout, settings, job)
        elif settings.state:
            self._draw_result(layout, settings)
        if settings.notice:
            box = layout.box()
            for i, line in enumerate(_wrap(settings.notice, 48)):
                box.label(text=line, icon="INFO" if i == 0 else "NONE")

    @staticmethod
    def _draw_progress(layout, settings, job) -> None:
        layout.progress(factor=job.fraction(), type="BAR",
                        text=f"{settings.stage.replace('_', ' ')} {settings.step:,} / {settings.total:,}")
        grid = layout.grid_flow(columns=2, even_columns=True)
        for label, value in (("Loss", f"{settings.loss:.4f}"), ("PSNR", f"{settings.psnr:.2f} dB"),
                             ("Splats", f"{settings.num_splats:,}"),
                             ("ETA", jobs.format_duration(settings.eta_sec) if settings.step else "-"),
                             ("Device", settings.device_used or "-")):
            grid.label(text=label)
            grid.label(text=value)
        if settings.rasterizer:  # which rasterizer runs and why, as the bridge said
            for i, line in enumerate(_wrap(f"Rasterizer: {settings.rasterizer}", 48)):
                layout.label(text=line, icon="SHADING_RENDERED" if i == 0 else "BLANK1")
        _draw_preview(layout)

    @staticmethod
    def _draw_result(layout, settings) -> None:
        box = layout.box()
        if settings.state in ("completed", "stopped"):
            box.label(text=f"Training {settings.state} at step {settings.step:,}", icon="CHECKMARK")
            if settings.eval_psnr:
                box.label(text=f"Held-out PSNR {settings.eval_psnr:.2f} dB, SSIM {settings.eval_ssim:.3f}")
            box.label(text=f"{settings.num_splats:,} splats")
            for path in (settings.splats_path, os.path.join(settings.run_dir, "metrics.json")):
                if path and os.path.isfile(path):
                    box.label(text=os.path.basename(path), icon="FILE")
            box.operator("splatwork.open_training_output", icon="FILE_FOLDER")
            _draw_preview(box)
        elif settings.state == "running":  # saved while training, or the job ended with the file
            box.label(text="Training was interrupted", icon="ERROR")
            box.label(text="Resume continues from the last checkpoint.")
        else:
            box.alert = True
            box.label(text=f"Training {settings.state}", icon="ERROR")
            for line in _wrap(settings.message, 48) + _wrap(settings.hint, 48):
                box.label(text=line)
            row = box.row()
            op = row.operator("splatwork.open_job_log", icon="TEXT")
            op.name, op.filepath = "train", settings.log_path
            row.operator("splatwork.open_training_output", text="", icon="FILE_FOLDER")


class VIEW3D_PT_splatwork_training_advanced(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Splatwork"
    bl_label = "Advanced"
    bl_parent_id = "VIEW3D_PT_splatwork_training"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        col = self.layout.column()
        col.use_property_split = True
        col.enabled = training_job() is None
        settings = context.scene.splatwork_training
        for name in panel_fields(TrainJob, "advanced"):
            col.prop(settings, name)


def _can_resume(settings) -> bool:
    from .run import TrainingError, dataset_paths

    try:
        name = dataset_paths(settings)[2]
    except TrainingError:
        return False
    return os.path.isfile(checkpoint_path(output_dir(settings, name)))


def _draw_preview(layout) -> None:
    image = bpy.data.images.get(PREVIEW_IMAGE)
    if image is not None and image.preview is not None:
        layout.template_icon(icon_value=image.preview.icon_id, scale=8.0)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) if text else []


_classes = (VIEW3D_PT_splatwork_training, VIEW3D_PT_splatwork_training_advanced)


def register() -> None:
    for cls in _classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
