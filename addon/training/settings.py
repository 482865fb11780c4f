"""What to train and how (saved with the .blend), and what the last run reported (``scene.splatwork_training``)."""
from __future__ import annotations

import bpy

from ...bridge.protocol import TRAIN_PRESETS, TrainPreset
from .remote import machine_property

# name -> (label, description, steps, downscale, sh degree, snapshot every, speed-ups: bridge job fields),
# from the bridge's presets (``python -m bridge train --preset``), so both mean the same run.
PRESETS = {
    name.upper(): (p.label, p.description, *(p.fields[k] for k in TrainPreset.PANEL_FIELDS), p.speedups)
    for name, p in TRAIN_PRESETS.items()
}


def _apply_preset(self, _context) -> None:
    if self.preset in PRESETS:
        _, _, steps, downscale, sh_degree, snapshot_every, _speedups = PRESETS[self.preset]
        self["steps"], self["downscale"], self["sh_degree"] = steps, downscale, sh_degree
        self["snapshot_every"] = snapshot_every
        self.speedups = self.preset


def _custom(self, _context) -> None:
    # Editing a value by hand leaves the preset, so the panel never claims a preset that is not in force.
    if self.preset in PRESETS:
        _, _, steps, downscale, sh_degree, snapshot_every, _speedups = PRESETS[self.preset]
        if (self.steps, self.downscale, self.sh_degree, self.snapshot_every) != (
                steps, downscale, sh_degree, snapshot_every):
            self["preset"] = 3  # CUSTOM's index


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
        items=[(key, label, text) for key, (label, text, *_rest) in PRESETS.items()]
        + [("CUSTOM", "Custom", "Settings edited by hand")],
        default="STANDARD",
        update=_apply_preset,
    )
    steps: bpy.props.IntProperty(name="Steps", default=15000, min=1, max=1_000_000, update=_custom)
    downscale: bpy.props.FloatProperty(
        name="Downscale", default=2.0, min=1.0, max=64.0, update=_custom,
        description="Divide the image size by this; larger trains faster and uses less memory",
    )
    sh_degree: bpy.props.IntProperty(
        name="SH Degree", default=3, min=0, max=3, update=_custom,
        description="Spherical harmonics degree: view-dependent colour (0: flat colour)",
    )
    snapshot_every: bpy.props.IntProperty(
        name="Preview Every", default=1000, min=0, update=_custom,
        description="Update the live splats and preview image every N steps (0: only at the end)",
    )
    speedups: bpy.props.EnumProperty(  # kept when a value is edited by hand: the run stays as fast
        name="Speed-ups",
        items=[(key, label, f"The speed-ups of {label}") for key, (label, *_rest) in PRESETS.items()],
        default="STANDARD",
        description="Whose speed-ups (small images first, visible-only updates, splat budget) training uses",
    )
    background: bpy.props.FloatVectorProperty(
        name="Background", subtype="COLOR", size=3, min=0.0, max=1.0, default=(0.0, 0.0, 0.0),
        description="Colour behind the splats while training: match a plain studio backdrop, else black",
    )
    device: bpy.props.EnumProperty(
        name="Device",
        items=[("auto", "Automatic", "An NVIDIA GPU with gsplat's kernels when they load, else with the "
                "PyTorch rasterizer (no compile); else Apple MPS; else the CPU"),
               ("cuda", "CUDA (gsplat kernels)", "An NVIDIA GPU with gsplat's CUDA kernels (fastest; built once "
                "during set-up)"),
               ("cuda-torch", "CUDA (no compile)", "An NVIDIA GPU with Splatwork's PyTorch rasterizer: nothing "
                "to compile, slower than gsplat's kernels"),
               ("mps", "Apple MPS", "An Apple GPU with the PyTorch rasterizer"),
               ("cpu", "CPU", "Pure PyTorch rasterizer: slow, for small scenes and previews")],
        default="auto",
    )
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
