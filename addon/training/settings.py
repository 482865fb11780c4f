"""What to train and how (saved with the .blend), and what the last run reported (``scene.splatwork_training``)."""
from __future__ import annotations

import bpy

from ...bridge.protocol import TRAIN_PRESETS, TrainJob
from ...bridge.protocol.jobs import panel_fields
from ..common.options import job_properties
from .remote import machine_property

# The panel's presets are the bridge's (``python -m bridge train --preset``), so both mean the same run;
# the Preset menu's keys are their names in capitals, plus CUSTOM for values edited by hand.
CUSTOM = "CUSTOM"


def preset_named(key: str):
    """The TrainPreset behind a menu key (None for Custom)."""
    return TRAIN_PRESETS.get(key.lower())


def _apply_preset(self, _context) -> None:
    preset = preset_named(self.preset)
    if preset is not None:
        for name, value in preset.shown.items():  # as ID properties: no update, so no detour via Custom
            prop = self.bl_rna.properties[name]
            self[name] = [i.identifier for i in prop.enum_items].index(value) if prop.type == "ENUM" else value
        self.speedups = self.preset


def _custom(self, _context) -> None:
    # Editing a value by hand leaves the preset, so the panel never claims a preset that is not in force.
    preset = preset_named(self.preset)
    if preset is not None and any(getattr(self, name) != value for name, value in preset.shown.items()):
        self.preset = CUSTOM


def _is_colmap_import(_self, collection) -> bool:
    from ..cameras.keys import MODEL_DIR_KEY

    return collection.get(MODEL_DIR_KEY) is not None


class SplatworkTrainingSettings(bpy.types.PropertyGroup):
    # -- dataset -------------------------------------------------------------------------------
    source: bpy.props.EnumProperty(
        name="Dataset",
        items=[("COLLECTION", "Imported Cameras", "A COLMAP reconstruction imported into this scene"),
               ("FOLDER", "Folder", "A folder with a COLMAP model (sparse/0) and its images (images/)")],
        default="COLLECTION",
    )
    collection: bpy.props.PointerProperty(
        name="Cameras", type=bpy.types.Collection, poll=_is_colmap_import,
        description="The collection made by Import COLMAP (empty: the last one imported into this scene)",
    )
    folder: bpy.props.StringProperty(
        name="Folder", subtype="DIR_PATH",
        description="Dataset folder: sparse/0 (or sparse/, or the model itself) and images/",
    )
    output_dir: bpy.props.StringProperty(
        name="Output", subtype="DIR_PATH",
        description="Where training writes splats, checkpoints, previews and its log; "
        "empty: a folder next to the .blend file",
    )
    # -- how -----------------------------------------------------------------------------------
    preset: bpy.props.EnumProperty(
        name="Preset",
        items=[(name.upper(), p.label, p.description) for name, p in TRAIN_PRESETS.items()]
        + [(CUSTOM, "Custom", "Settings edited by hand")],
        default="STANDARD",
        update=_apply_preset,
    )
    speedups: bpy.props.EnumProperty(  # kept when a value is edited by hand: the run stays as fast
        name="Speed-ups",
        items=[(name.upper(), p.label, f"The speed-ups of {p.label}") for name, p in TRAIN_PRESETS.items()],
        default="STANDARD",
        description="Whose speed-ups (small images first, visible-only updates, splat budget) training uses",
    )
    # Every training option the panel shows, made from the TrainJob fields (label, tooltip, bounds,
    # choices), with the Standard preset's values as defaults.
    __annotations__.update(job_properties(TrainJob, panel_fields(TrainJob), TRAIN_PRESETS["standard"].fields,
                                          update=_custom))
    machine: machine_property()
    # -- the last run (written by the job's callbacks) -----------------------------------------
    state: bpy.props.StringProperty(name="State")  # "", running, completed, stopped, failed, killed
    stage: bpy.props.StringProperty()
    step: bpy.props.IntProperty()
    total: bpy.props.IntProperty()
    loss: bpy.props.FloatProperty()
    psnr: bpy.props.FloatProperty()
    num_splats: bpy.props.IntProperty()
    eta_sec: bpy.props.FloatProperty()
    dataset_name: bpy.props.StringProperty()
    device_used: bpy.props.StringProperty()
    rasterizer: bpy.props.StringProperty()  # which rasterizer runs and why (the bridge's Hello)
    eval_psnr: bpy.props.FloatProperty()
    eval_ssim: bpy.props.FloatProperty()
    message: bpy.props.StringProperty()
    notice: bpy.props.StringProperty()  # a warning from the bridge, e.g. the no-compile fallback and its cost
    hint: bpy.props.StringProperty()
    log_path: bpy.props.StringProperty(subtype="FILE_PATH")
    run_dir: bpy.props.StringProperty(subtype="DIR_PATH")
    splats_path: bpy.props.StringProperty(subtype="FILE_PATH")
    preview_path: bpy.props.StringProperty(subtype="FILE_PATH")
    result_object: bpy.props.PointerProperty(type=bpy.types.Object)


def register() -> None:
    bpy.utils.register_class(SplatworkTrainingSettings)
    bpy.types.Scene.splatwork_training = bpy.props.PointerProperty(type=SplatworkTrainingSettings)


def unregister() -> None:
    del bpy.types.Scene.splatwork_training
    bpy.utils.unregister_class(SplatworkTrainingSettings)
