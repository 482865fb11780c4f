"""``blender --command splatwork ...``: the whole pipeline without a UI.

Import a COLMAP model, train, import the result, clean it up (``--cleanup``), save the .blend, render
a preview and export the splats; or import a splat file (``--splats``) and do the same to it; or, with
``--check``, say what the training environment has (the words of Preferences > Check Environment and
``python -m bridge check``; ``--json`` for scripts). ``main(argv)`` is the command (also callable
from Python, e.g. under the bpy module, which has no blender binary).
Exit codes: 0 done (or stopped with results saved), 1 a step failed, 2 bad arguments or input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import bpy

from ...bridge.formats import FormatError, table
from ...bridge.formats.atomic import atomic_path
from ...bridge.formats.cleanup import CLEANUP_KEYS, CleanupError, parse_cleanup_spec
from ...bridge.protocol import TRAIN_PRESETS, JobError, TrainJob, job_from_dict
from ...bridge.protocol.flags import add_job_flags, flag_name
from ...bridge.protocol.jobs import panel_fields

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

_handle = None


class _Exit(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class _Parser(argparse.ArgumentParser):
    # argparse would call sys.exit(), which would end Blender (or the Python that imported bpy).
    def exit(self, status=0, message=None):
        if message:
            print(message, file=sys.stderr, end="")
        raise _Exit(status)

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"splatwork: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="blender --background --command splatwork",
        description="Import a COLMAP reconstruction, train Gaussian splats on it, import them with the "
        "preview modifier, save the .blend and render a preview with Cycles.",
        epilog="exit codes: 0 done (or stopped with results saved), 1 a step failed, 2 bad arguments or input",
    )
    p.add_argument("--check", action="store_true",
                   help="check the training environment (Python, torch, gsplat, GPU, driver, nvcc, kernels) and exit: "
                   "0 when nothing is wrong, 1 otherwise")
    p.add_argument("--json", action="store_true", help="with --check: the check as JSON")
    p.add_argument("--model", help="COLMAP model folder (sparse/0) or the project folder (required to train)")
    p.add_argument("--images", help="the photos (default: images/ next to sparse/)")
    p.add_argument("--out", help="output folder for training (splats.ply, checkpoints, log; required to train)")
    p.add_argument("--preset", choices=list(TRAIN_PRESETS), default="standard",
                   help="the settings to start from (the options below override them): " + "; ".join(
                       f"{name}: {preset.description}" for name, preset in TRAIN_PRESETS.items()))
    # The training options the panel shows, as flags: made from the job's fields (protocol.flags).
    add_job_flags(p, TrainJob, panel_fields(TrainJob), TRAIN_PRESETS["standard"].fields)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    p.add_argument("--machine", default="", help="train on this remote machine (Preferences > Splatwork > "
                   "Remote Machines; default: this computer)")
    p.add_argument("--splats", help="import this splat file (.ply, .spz, .splat, ...) instead of training, to clean "
                   "up (--cleanup), save (--blend) or export (--export) it")
    p.add_argument("--cleanup", metavar="KEY=VALUE,...",
                   help="select splats after training or import and hide (or delete) them; keys: "
                   + "; ".join(f"{key}: {words}" for key, words in CLEANUP_KEYS.items()).replace("%", "%%")
                   + " (e.g. opacity=0.05,outliers=2.5)")
    p.add_argument("--export", metavar="FILE", help="write the splats left visible to FILE, in the format its name "
                   "ends in: " + ", ".join(f.extension for f in table.FORMATS) + " (.glb and .gltf: glTF 2.0 with "
                   "KHR_gaussian_splatting, for web viewers)")
    p.add_argument("--blend", help="save the scene to this .blend file")
    p.add_argument("--render", help="render a preview PNG here with Cycles")
    p.add_argument("--camera", help="image name of the camera to render from (default: the first image)")
    p.add_argument("--samples", type=int, default=32, help="Cycles samples for the preview (default 32)")
    return p


def main(argv: list[str]) -> int:
    """The command: returns the exit code, never raises, never calls sys.exit."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.check:
            return _check(args.json)
        if args.export and table.format_for_extension(args.export) is None:
            parser.error(f"--export {args.export}: the name must end in one of "
                         + ", ".join(f.extension for f in table.FORMATS))
        if args.cleanup is not None:
            try:
                args.cleanup = parse_cleanup_spec(args.cleanup)
            except CleanupError as exc:
                parser.error(f"--cleanup: {exc}")
        if args.splats is not None:
            if args.render:
                parser.error("--render needs the training cameras: it works with --model, not --splats")
            return _finish(args, None, _import_splat_file(args.splats))
        missing = [f"--{name}" for name in ("model", "out") if getattr(args, name) is None]
        if missing:
            parser.error(f"the following arguments are required: {', '.join(missing)} (or --check)")
        try:
            check_training_options(args)
        except JobError as exc:
            parser.error(exc.message.removeprefix("job field ").replace(f"'{exc.field}'", flag_name(exc.field), 1))
        return _run(args)
    except _Exit as exc:
        return exc.code


def training_options(args) -> dict:
    """The training options given as flags (the others come from the preset)."""
    return {name: getattr(args, name) for name in panel_fields(TrainJob) if getattr(args, name) is not None}


def check_training_options(args) -> None:
    """The preset with the flags over it, checked by the job's own validator before any work starts
    (JobError names the field)."""
    job_from_dict(TrainJob, {"model": args.model, "images": args.images or args.model, "out": args.out,
                             **TRAIN_PRESETS[args.preset].fields, **training_options(args)})


def _fail(code: int, message: str) -> int:
    print(f"splatwork: error: {message}", file=sys.stderr, flush=True)
    return code


def _check(as_json: bool) -> int:
    """The environment check of the Bridge Python the add-on would train with."""
    from ...bridge import envcheck
    from ..setup.preferences import CHECK_RESULT, check_environment

    check_environment(block=True)
    info = dict(CHECK_RESULT)
    lines = envcheck.report_lines(info)
    if info.get("error"):
        lines.insert(0, ("error", info["error"]))
    if as_json:
        print(json.dumps(info, indent=1, sort_keys=True), flush=True)
    else:
        print(envcheck.report_text(lines), flush=True)
    return EXIT_FAILED if any(level == "error" for level, _ in lines) else EXIT_OK


def _run(args) -> int:
    from ..training import TrainingError, start_training

    scene = bpy.context.scene
    model = os.path.abspath(args.model)
    kwargs = {"model_dir": model}
    if args.images:
        kwargs["images_dir"] = os.path.abspath(args.images)
    try:
        result = bpy.ops.splatwork.import_colmap(**kwargs)
    except RuntimeError as exc:  # the operator's error report
        return _fail(EXIT_BAD_INPUT, str(exc).removeprefix("Error: ").strip())
    if result != {"FINISHED"}:
        return _fail(EXIT_BAD_INPUT, f"could not import the COLMAP model {model}")
    collection = scene.splatwork_colmap.collection
    print(f"splatwork: imported {collection.name}", flush=True)

    settings = scene.splatwork_training
    settings.source, settings.collection = "COLLECTION", collection
    settings.preset = args.preset.upper()
    for name, value in training_options(args).items():
        setattr(settings, name, value)
    settings.output_dir = os.path.abspath(args.out)
    settings.machine = args.machine
    try:
        job = start_training(scene, resume=args.resume, block=True)
    except TrainingError as exc:
        return _fail(EXIT_BAD_INPUT, str(exc))
    if job.state not in ("completed", "stopped"):
        code = EXIT_BAD_INPUT if job.exit_code == EXIT_BAD_INPUT else EXIT_FAILED
        return _fail(code, job.message() or f"training {job.state}; log: {job.log_path}")
    obj = settings.result_object
    print(f"splatwork: {obj.name}: {len(obj.data.points):,} splats, held-out PSNR {settings.eval_psnr:.2f} dB",
          flush=True)
    return _finish(args, collection, obj)


def _import_splat_file(path: str):
    from ..splats import import_splats

    path = os.path.abspath(path)
    try:
        obj = import_splats(path, bpy.context.scene.collection)
    except FormatError as exc:
        raise _Exit(_fail(EXIT_BAD_INPUT, str(exc))) from None
    print(f"splatwork: imported {obj.name}: {len(obj.data.points):,} splats", flush=True)
    return obj


def _apply_cleanup(obj, spec) -> int:
    from ..splats import SplatLayoutError, cleanup

    try:
        outcomes = cleanup(obj, spec)
    except (CleanupError, SplatLayoutError) as exc:
        return _fail(EXIT_BAD_INPUT, f"--cleanup: {exc}")
    for outcome in outcomes:
        print(f"splatwork: cleanup: {outcome.message}", flush=True)
    return EXIT_OK


def _finish(args, collection, obj) -> int:
    """What follows training or an import: cleanup, .blend, preview render, export."""
    scene = bpy.context.scene
    if args.cleanup is not None:
        code = _apply_cleanup(obj, args.cleanup)
        if code != EXIT_OK:
            return code
    if args.export:
        from ..output.export import export_objects

        path = os.path.abspath(args.export)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            count = export_objects([obj], path, None, None)
        except (FormatError, OSError) as exc:
            return _fail(EXIT_BAD_INPUT, f"export failed: {exc}")
        print(f"splatwork: exported {count:,} splats to {path}", flush=True)
    if args.blend:
        path = os.path.abspath(args.blend)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=path)  # Blender writes a temporary file and renames it
        print(f"splatwork: saved {path}", flush=True)
    if args.render:
        try:
            render_preview(scene, collection, args.render, args.camera, args.samples)
        except (RuntimeError, ValueError, OSError) as exc:
            return _fail(EXIT_FAILED, f"render failed: {exc}")
        print(f"splatwork: rendered {os.path.abspath(args.render)}", flush=True)
    return EXIT_OK


def camera_for_image(collection, image_name: str | None):
    cameras = sorted((o for o in collection.objects if o.type == "CAMERA" and o.data.splatwork_colmap.image_name),
                     key=lambda o: o.data.splatwork_colmap.image_name)
    if not cameras:
        raise ValueError(f"collection '{collection.name}' has no COLMAP cameras")
    if image_name is None:
        return cameras[0]
    for obj in cameras:
        if obj.data.splatwork_colmap.image_name == image_name:
            return obj
    raise ValueError(f"no camera for image '{image_name}' in '{collection.name}'")


def render_preview(scene, collection, path: str, image_name: str | None = None, samples: int = 32) -> str:
    """Render the splats from the camera of ``image_name`` with Cycles into ``path`` (PNG, written atomically)."""
    from ..cameras.activate import activate_camera

    camera = camera_for_image(collection, image_name)
    activate_camera(scene, camera)  # the camera's own resolution and pixel aspect
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.samples = samples
    scene.cycles.device = "CPU"
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    with atomic_path(path) as tmp:  # an ordinary file's permissions; replaced only when the render worked
        scene.render.filepath = tmp
        bpy.ops.render.render(write_still=True, scene=scene.name)
    return path


def register() -> None:
    global _handle
    _handle = bpy.utils.register_cli_command("splatwork", main)


def unregister() -> None:
    global _handle
    if _handle is not None:
        bpy.utils.unregister_cli_command(_handle)
        _handle = None
