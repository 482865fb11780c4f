"""One training run: where the data is, the bridge command, and applying its events to the scene."""
from __future__ import annotations

import os
import posixpath
from pathlib import Path

import bpy

from ...bridge import formats, protocol
from ..common import jobs
from ..common.options import job_values
from ..setup import runtime
from . import remote
from .settings import preset_named

JOB_NAME = "train"
PREVIEW_IMAGE = "Splatwork Training Preview"
# Set by Import COLMAP when it knows the photos' folder; otherwise they are looked for next to sparse/.
IMAGES_KEY = "splatwork_colmap_images"


class TrainingError(Exception):
    """Training cannot start; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}. {self.hint}" if self.hint else self.message


# ---------------------------------------------------------------------------------------------
# What to train on


def _images_next_to(model: Path) -> str | None:
    from ..cameras.import_ops import default_images_dir

    found = default_images_dir(model)
    return str(found) if found is not None else None


def dataset_paths(settings) -> tuple[str, str, str]:
    """(model folder, images folder, dataset name) for the settings, or a TrainingError naming the problem."""
    from ...bridge.formats.colmap import find_models
    from ..cameras.keys import MODEL_DIR_KEY

    if settings.source == "COLLECTION":
        coll = settings.collection or settings.id_data.splatwork_colmap.collection
        if coll is None:
            raise TrainingError("no camera collection chosen",
                                "Import a COLMAP reconstruction (File > Import > COLMAP) and pick its collection, "
                                "or switch Dataset to Folder.")
        if not coll.get(MODEL_DIR_KEY):
            raise TrainingError(f"collection '{coll.name}' was not made by Import COLMAP",
                                "Pick the collection that Import COLMAP created, or switch Dataset to Folder.")
        model = bpy.path.abspath(coll[MODEL_DIR_KEY])
        images = coll.get(IMAGES_KEY) or _images_next_to(Path(model))
        name = coll.name
        if images is None:
            raise TrainingError(f"no images folder next to the model {model}",
                                "Training needs the photos in images/ next to sparse/; or use Dataset: Folder.")
        images = bpy.path.abspath(images)
    else:
        folder = Path(bpy.path.abspath(settings.folder)) if settings.folder else None
        if folder is None or not folder.is_dir():
            raise TrainingError(f"dataset folder '{folder}' not found" if folder else "no dataset folder set",
                                "Choose a folder holding sparse/0 (the COLMAP model) and images/.")
        models = find_models(folder)
        if not models:
            raise TrainingError(f"{folder}: no COLMAP model (cameras, images and points3D) in it or in sparse/",
                                "Run Reconstruct first, or choose the dataset's root folder.")
        model, name = str(models[0]), folder.name or "dataset"
        images = _images_next_to(models[0])
        if images is None:
            raise TrainingError(f"{folder}: no images/ folder next to the model",
                                "The photos must sit in images/ next to sparse/.")
    if not os.path.isdir(model):
        raise TrainingError(f"COLMAP model folder '{model}' not found", "Was the dataset moved or deleted?")
    if not os.path.isdir(images):
        raise TrainingError(f"images folder '{images}' not found", "Was the dataset moved or deleted?")
    return os.path.abspath(model), os.path.abspath(images), name


def output_dir(settings, dataset_name: str) -> str:
    if settings.output_dir:
        return os.path.abspath(bpy.path.abspath(settings.output_dir))
    safe = bpy.path.clean_name(dataset_name)
    if bpy.data.filepath:
        return os.path.abspath(bpy.path.abspath(f"//splatwork/{safe}"))
    # An unsaved file has no folder of its own: keep runs where the add-on keeps its data.
    return os.path.join(os.path.dirname(runtime.log_dir()), "runs", safe)


def checkpoint_path(out: str) -> str:
    return os.path.join(out, "checkpoints", "last.pt")


# ---------------------------------------------------------------------------------------------
# Running


def start_training(scene, resume: bool = False, block: bool | None = None) -> jobs.Job:
    """Start (or resume) training with ``scene.splatwork_training``; blocks under --background."""
    settings = scene.splatwork_training
    model, images, name = dataset_paths(settings)
    out = output_dir(settings, name)
    try:
        machine = remote.machine_named(settings.machine)
        if resume and not (machine.exists(posixpath.join(machine.place(out, "out"), "checkpoints", "last.pt"))
                           if machine else os.path.isfile(checkpoint_path(out))):
            where = f" on {machine.name}" if machine else ""
            raise TrainingError(f"nothing to resume in {out}{where}", "Start a new training run with Train.")
    except jobs.StartError as exc:
        raise TrainingError(exc.message, exc.hint) from None
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise TrainingError(f"cannot create the output folder {out}: {exc.strerror}",
                            "Choose another Output.") from None
    try:
        # The preset's speed-ups (bridge job fields) go with the run, also when a value was edited by hand.
        request = train_job(settings, model=model, images=images, out=out, resume=resume,
                            **preset_named(settings.speedups).speedups)
    except protocol.JobError as exc:
        raise TrainingError(exc.message, exc.hint) from None
    _reset_status(settings, out, name)
    scene_name = scene.name
    try:
        return jobs.start_job(
            JOB_NAME, request,
            on_event=lambda job, event: _on_event(scene_name, event),
            on_finish=lambda job: _on_finish(scene_name, job),
            block=block, log_path=settings.log_path, machine=machine,
        )
    except jobs.StartError as exc:
        settings.state, settings.message, settings.hint = "failed", exc.message, exc.hint
        raise TrainingError(exc.message, exc.hint) from None


def train_job(settings, **values) -> protocol.TrainJob:
    """The job from the settings (every TrainJob field they have a property for: those the panel shows)
    and ``values`` (paths, speed-ups) over them; checked by the protocol's validator before any process
    starts."""
    return protocol.job_from_dict(protocol.TrainJob, {**job_values(settings, protocol.TrainJob), **values})


def _reset_status(settings, out: str, name: str) -> None:
    settings.state, settings.stage, settings.message, settings.hint = "running", "starting", "", ""
    settings.rasterizer = ""
    settings.notice = ""
    settings.step = settings.num_splats = 0
    settings.total = settings.steps
    settings.loss = settings.psnr = settings.eta_sec = settings.eval_psnr = settings.eval_ssim = 0.0
    settings.run_dir = out
    settings.log_path = os.path.join(out, "train.log")
    settings.splats_path = ""
    settings.dataset_name = name


def _settings(scene_name: str):
    scene = bpy.data.scenes.get(scene_name)
    return scene.splatwork_training if scene is not None else None


def _on_event(scene_name: str, event: protocol.Event) -> None:
    settings = _settings(scene_name)
    if settings is None:
        return
    if isinstance(event, protocol.Hello):
        settings.device_used = f"{event.device} ({event.backend})" if event.backend else event.device
        settings.rasterizer = event.rasterizer
    elif isinstance(event, protocol.Stage):
        settings.stage = event.stage
    elif isinstance(event, protocol.Log) and event.level == "warning":
        settings.notice = event.message
    elif isinstance(event, protocol.Progress):
        settings.stage, settings.step, settings.total = event.stage, event.step, event.total
        for name in ("loss", "psnr", "eta_sec"):
            if getattr(event, name) is not None:
                setattr(settings, name, getattr(event, name))
        if event.num_splats is not None:
            settings.num_splats = event.num_splats
    elif isinstance(event, protocol.Snapshot):
        settings.step = max(settings.step, event.step)
        if event.preview and os.path.isfile(event.preview):
            show_preview(settings, event.preview)
        if event.ply and os.path.isfile(event.ply):
            try:
                show_splats(scene_name, event.ply, final=False)
            except (formats.FormatError, OSError, ValueError) as exc:
                # A snapshot is only a preview: training goes on, and the final splats are read again.
                settings.hint = f"Live preview skipped a snapshot: {exc}"
    elif isinstance(event, protocol.EvalResult):
        settings.eval_psnr, settings.eval_ssim = event.mean_psnr, event.mean_ssim


def _on_finish(scene_name: str, job: jobs.Job) -> None:
    settings = _settings(scene_name)
    if settings is None:
        return
    settings.state = job.state
    if job.done is not None:
        splats = job.done.outputs.get("splats", "")
        settings.splats_path = splats
        if splats and os.path.isfile(splats):
            try:
                show_splats(scene_name, splats, final=True)
            except (formats.FormatError, OSError, ValueError) as exc:
                settings.state, settings.message = "failed", str(exc)
                settings.hint = "The trainer wrote a file Splatwork cannot read; see the log."
                return
        metrics = job.done.metrics
        if metrics.get("psnr") is not None:
            settings.eval_psnr = metrics["psnr"]
        if metrics.get("ssim") is not None:
            settings.eval_ssim = metrics["ssim"]
        if metrics.get("num_splats") is not None:
            settings.num_splats = metrics["num_splats"]
        if metrics.get("step") is not None:
            settings.step = metrics["step"]
    elif job.error is not None:
        settings.message, settings.hint = job.error.message, job.error.hint
    elif job.state == "killed":
        settings.message = "training was ended before it could save"
        settings.hint = "Resume continues from the last checkpoint."


def show_preview(settings, path: str) -> None:
    # Packed, because the trainer deletes older snapshots: the image must outlive its file.
    image = bpy.data.images.load(path)
    image.pack()
    old = bpy.data.images.get(PREVIEW_IMAGE)
    if old is not None:
        bpy.data.images.remove(old)
    image.name = PREVIEW_IMAGE
    image.preview_ensure()
    settings.preview_path = path


def show_splats(scene_name: str, path: str, final: bool) -> bpy.types.Object:
    """Read ``path`` into the run's splat object: created on the first snapshot, then updated in place."""
    from ..splats import import_splats, is_splat_object

    scene = bpy.data.scenes[scene_name]
    settings = scene.splatwork_training
    name = f"{settings.dataset_name or 'Training'} Splats"
    obj = settings.result_object
    live = obj is not None and obj.name in bpy.data.objects and is_splat_object(obj)
    collection = None
    if not live and settings.source == "COLLECTION":
        collection = settings.collection or scene.splatwork_colmap.collection
    with bpy.context.temp_override(scene=scene):
        if live:
            import_splats(path, into=obj)
        else:  # trained in COLMAP's frame: lined up with the cameras below, not turned z-up
            obj = import_splats(path, collection, z_up=False, name=name + ("" if final else " (training)"))
    if not live:
        _line_up_with_cameras(obj, collection)
        settings.result_object = obj
    if final:
        obj.name = name
    return obj


def _line_up_with_cameras(obj, collection) -> None:
    """Splats are trained in the COLMAP world frame: give them the transform Import COLMAP gave the cameras."""
    from ..cameras.keys import WORLD_KEY

    if collection is None or collection.get(WORLD_KEY) is None:
        return
    from mathutils import Matrix

    values = list(collection[WORLD_KEY])
    obj.matrix_world = Matrix([values[i:i + 4] for i in range(0, 16, 4)])
