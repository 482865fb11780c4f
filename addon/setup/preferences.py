"""Add-on preferences: which Python runs the bridge, installing that environment, and checking it.

Which interpreter runs the bridge is decided in ``runtime`` (``runtime.bridge_python()``; the
*Bridge Python* setting and the environment the installer makes are read there).
``install_steps(env_dir, build)`` is the exact list of argument lists the installer runs, and
``start_task(kind, steps)`` runs such steps in the background (one at a time, output streamed into
``TASKS[kind]``, pumped by the jobs' timer on the main thread); ``check_environment()`` starts the check.
"""
from __future__ import annotations

import atexit
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import bpy

from ...bridge import envcheck, protocol
from ...bridge.client import CODE_ROOT, PipeProcess, tool_env
from ..common import jobs
from ..training import remote
from . import runtime
from .runtime import ADDON_ID, log_dir, managed_env_dir, managed_python, prefs  # noqa: F401 - used here and by callers

# What the bridge imports, pinned per Python version: the environment is made from Blender's own
# Python (3.11 in Blender 5.0, 3.13 from 5.1), and numpy 1.26 has no wheels for 3.13. The 3.11 row
# is the project's lock (constraints.txt); tests/test_install_pins.py resolves every row against
# the package index for each platform the extension ships for.
TORCH = "torch==2.13.0"
# OpenEXR writes the render passes, av decodes video for SfM. gsplat's kernel loader imports packaging
# without declaring it, and nothing else here pulls it in. warp-lang is the compiled rasterizer's
# compiler (its wheel carries Clang/LLVM for the CPU and NVRTC for NVIDIA GPUs: no toolchain needed).
_COMMON = ("gsplat==1.5.3", "pycolmap==4.2.1", "plyfile==1.1.3", "pytorch-msssim==1.0.0", "pillow==11.3.0",
           "OpenEXR==3.5.3", "av==18.1.0", "packaging==26.3", "warp-lang==1.19.0")
BRIDGE_PINS = {
    (3, 11): (*_COMMON, "numpy==1.26.4"),
    (3, 13): (*_COMMON, "numpy==2.5.5"),
}


class UnsupportedPython(RuntimeError):
    """No tested package set for the Python that would run the bridge."""


def bridge_packages(version: tuple[int, int] | None = None) -> tuple[str, ...]:
    """The pinned bridge packages for Python ``version`` (default: the one running Blender)."""
    version = tuple(version or sys.version_info[:2])
    if version not in BRIDGE_PINS:
        known = ", ".join(f"{a}.{b}" for a, b in BRIDGE_PINS)
        raise UnsupportedPython(f"no tested training environment for Python {version[0]}.{version[1]} "
                                f"(tested: {known}); set Bridge Python to an interpreter with torch and gsplat")
    return (TORCH, *BRIDGE_PINS[version])
# torch's builds by index (envcheck.torch_build_here picks one from the NVIDIA driver): CUDA 13 where
# the driver runs it (580+) on Linux and Windows x86_64, else CUDA 12.8, else the CPU build.
TORCH_INDEXES = {
    "cu130": "https://download.pytorch.org/whl/cu130",
    "cu128": "https://download.pytorch.org/whl/cu128",
    "cpu": "https://download.pytorch.org/whl/cpu",
}
# NVIDIA's CUDA 13.0 compiler as wheels from PyPI (nvcc, its C++ front end cicc, the device headers,
# CCCL, and the runtime to link with), at the versions of cuda-toolkit 13.0.3, which torch 2.13's
# CUDA 13 build requires on Linux: with them the kernel build needs no CUDA Toolkit. CUDA 12 has no
# such route (nvidia-cuda-nvcc-cu12 holds no nvcc). tests/test_install_pins.py resolves them.
CUDA13_COMPILER = ("nvidia-cuda-nvcc==13.0.88", "nvidia-cuda-crt==13.0.88", "nvidia-nvvm==13.0.88",
                   "nvidia-cuda-cccl==13.0.85", "nvidia-cuda-runtime==13.0.96")


def install_steps(env_dir: str, build: str, base_python: str | None = None,
                  python_version: tuple[int, int] | None = None) -> list[list[str]]:
    """The installer's commands for torch ``build`` ("cpu", "cu128" or "cu130"): a venv, a pip that streams
    progress, torch, then the rest (with NVIDIA's compiler wheels for cu130), pinned for ``python_version``
    (that of ``base_python``; default Blender's own), then the kernel build. UnsupportedPython if none fits."""
    packages = bridge_packages(python_version)
    python = managed_python(env_dir)
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "raw"]
    # A CUDA build is named with its local label (torch==2.13.0+cu130): a plain torch==2.13.0 is already
    # satisfied by the CPU or CUDA 12.8 build in an environment installed before, which would stay.
    torch_step = [*pip, TORCH if build == "cpu" else f"{TORCH}+{build}"]
    if build != "cpu" or sys.platform != "darwin":  # macOS wheels come from PyPI; elsewhere the index picks
        torch_step += ["--index-url", TORCH_INDEXES[build]]
    steps = [
        [base_python or sys.executable, "-m", "venv", env_dir],
        # pip learnt the machine-readable "raw" progress bar in 24.1; the venv's bundled pip may be older.
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--upgrade", "pip>=24.1"],
        torch_step,
        [*pip, *packages[1:], *(CUDA13_COMPILER if build == "cu130" else ())],
    ]
    if build != "cpu":  # gsplat's kernels now, not at the first training; skipped with a warning without nvcc
        steps.append(build_kernels_step(python, if_possible=True))
    return steps


def build_kernels_step(python: str, if_possible: bool = False) -> list[str]:
    """``python -m bridge build-kernels``: runs with the bridge's root as working folder (see Task)."""
    return [python, "-m", "bridge", "build-kernels", *(["--if-possible"] if if_possible else [])]


# ---------------------------------------------------------------------------------------------
# Background tasks: a sequence of commands, output streamed to the UI


class Task:
    """Runs argument lists one after another (each a ``bridge.client.PipeProcess``: its output lines arrive
    on a queue); the jobs' timer pumps it (``jobs.watch``)."""

    def __init__(self, kind: str, steps: list[list[str]], log_path: str, on_finish=None):
        self.kind = kind
        self.steps = steps
        self.log_path = log_path
        self.on_finish = on_finish
        self.step = 0
        self.lines: list[str] = []  # the last lines of output, for the UI
        self.status = "starting"
        self.fraction = 0.0
        self.state = "running"  # running, completed, failed, cancelled
        self.error = ""
        self.exit_code: int | None = None
        self.bridge_error = ""  # message and hint of a bridge step's Error event
        self.warnings: list[str] = []  # a bridge step's warnings (e.g. kernels not built, and why)
        self.process: PipeProcess | None = None
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "a", encoding="utf-8")
        self._start_step()

    def _start_step(self) -> None:
        argv = self.steps[self.step]
        self._log.write(f"$ {' '.join(argv)}\n")
        self._log.flush()
        self.status = f"step {self.step + 1} of {len(self.steps)}: {Path(argv[0]).name} {' '.join(argv[1:4])}"
        try:  # in the bridge's root, so "-m bridge" steps find it; pip steps do not mind
            self.process = PipeProcess(argv, None, cwd=CODE_ROOT, env=tool_env())
        except OSError as exc:
            self._end("failed", f"could not run {argv[0]}: {exc}")
            return
        self.process.close_stdin()

    def update(self) -> None:
        for line in self.process.items() if self.process is not None else ():
            self._log.write(line + "\n")
            if self._bridge_event(line):
                continue
            progress = re.match(r"Progress (\d+) of (\d+)", line)
            if progress:
                done, total = int(progress.group(1)), int(progress.group(2))
                self.fraction = (self.step + done / max(total, 1)) / len(self.steps)
                continue
            if line.strip():
                self.lines = [*self.lines[-7:], line]
                if line.startswith(("Collecting", "Downloading", "Installing", "Successfully")):
                    self.status = line[:120]
        self._log.flush()
        if self.state != "running" or self.process is None or not self.process.finished():
            return  # still running, or its output still draining
        code = self.process.wait()
        if code != 0 and self.bridge_error:
            self._end("failed", self.bridge_error)
            return
        if code != 0:
            tail = next((line for line in reversed(self.lines) if "error" in line.lower()), "")
            self._end("failed", f"'{' '.join(self.steps[self.step][:4])} ...' exited with code {code}. {tail}")
            return
        self.step += 1
        self.fraction = self.step / len(self.steps)
        if self.step == len(self.steps):
            self._end("completed", "")
        else:
            self._start_step()

    def _bridge_event(self, line: str) -> bool:
        """Applies a bridge step's protocol event; False when the line is not one."""
        event = protocol.decode_event(line)
        if event is None:
            return False
        if isinstance(event, protocol.Progress) and event.total:
            self.fraction = (self.step + event.step / event.total) / len(self.steps)
            self.status = f"{event.stage.replace('_', ' ')} {event.step} / {event.total}"
        elif isinstance(event, protocol.Stage):
            self.status = f"{event.stage.replace('_', ' ')} {event.message}"[:120]
        elif isinstance(event, protocol.Log) and event.level != "info":
            self.warnings.append(event.message)
            self.lines = [*self.lines[-7:], event.message]
        elif isinstance(event, protocol.Error):
            self.bridge_error = f"{event.message}. {event.hint}".strip()
        return True

    def cancel(self) -> None:
        """Asks the step to stop (a bridge step cleans up: a kernel build removes its half-built files),
        then kills it if it has not ended within 10 s."""
        if self.state == "running" and self.process is not None and self.process.poll() is None:
            self.process.proc.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self.process.kill()
        if self.state == "running":
            self._end("cancelled", "")

    def _end(self, state: str, error: str) -> None:
        self.state = state
        self.error = error
        self.exit_code = self.process.proc.returncode if self.process is not None else None
        self.status = {"completed": "done", "cancelled": "cancelled"}.get(state, "failed")
        self._log.write(f"== {state} {error}\n")
        self._log.close()
        if self.on_finish is not None:
            self.on_finish(self)


TASKS: dict[str, Task] = {}
CHECK_RESULT: dict = {}  # the last environment check, as bridge/envcheck.py reports it (plus "error")


def start_task(kind: str, steps: list[list[str]], on_finish=None, block: bool | None = None) -> Task:
    current = TASKS.get(kind)
    if current is not None and current.state == "running":
        raise RuntimeError(f"the {kind} is already running")
    task = Task(kind, steps, os.path.join(log_dir(), kind.replace(" ", "-") + ".log"), on_finish)
    TASKS[kind] = task
    if bpy.app.background if block is None else block:
        while task.state == "running":
            task.update()
            time.sleep(0.05)
    else:
        jobs.watch(task)
    return task


def check_environment(python: str | None = None, block: bool | None = None) -> Task:
    """Ask the bridge interpreter (in a subprocess) what it has; the answer lands in CHECK_RESULT."""
    python = python or runtime.bridge_python()
    CHECK_RESULT.clear()
    if not python:
        CHECK_RESULT["error"] = "No Python with PyTorch is set up yet."
        python = sys.executable

    def finished(task: Task) -> None:
        for line in task.lines:
            if line.startswith(envcheck.MARKER):
                CHECK_RESULT.update(json.loads(line[len(envcheck.MARKER):]))
        if task.state == "failed":
            CHECK_RESULT["error"] = task.error

    script = os.path.join(CODE_ROOT, "bridge", "envcheck.py")
    return start_task("environment check", [[python, script]], finished, block)


def _install_finished(task: Task) -> None:
    if task.state == "completed":
        p = prefs()
        if p is not None and not p.python_path:
            runtime.detect_python(refresh=True)
        check_environment(managed_python(), block=False)


# ---------------------------------------------------------------------------------------------
# UI


class SPLATWORK_OT_install_environment(bpy.types.Operator):
    """Create a Python environment for training and install PyTorch (the CUDA build when an NVIDIA GPU is
    present), gsplat, pycolmap and plyfile into it. Downloads about 1-3 GB"""

    bl_idname = "splatwork.install_environment"
    bl_label = "Install Training Environment"

    def execute(self, context):
        env_dir = managed_env_dir(create=True)
        if env_dir is None:
            self.report({"ERROR"}, "Splatwork is not installed as an extension; cannot make its environment")
            return {"CANCELLED"}
        build, gpu = envcheck.torch_build_here()
        try:
            steps = install_steps(env_dir, build)
            start_task("installation", steps, _install_finished)
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        what = {"cu130": "torch for CUDA 13 with NVIDIA's CUDA compiler", "cu128": "torch for CUDA 12.8",
                "cpu": "torch for the CPU"}[build]
        driver = f" (NVIDIA driver {gpu['driver']}, CUDA {gpu['cuda'] or '?'})" if gpu else ""
        self.report({"INFO"}, f"Installing the training environment into {env_dir}: {what}{driver}")
        return {"FINISHED"}


class SPLATWORK_OT_cancel_install(bpy.types.Operator):
    """Stop installing the training environment (or building the GPU kernels)"""

    bl_idname = "splatwork.cancel_install"
    bl_label = "Cancel Installation"
    bl_options = {"INTERNAL"}

    kind: bpy.props.StringProperty(default="installation", options={"SKIP_SAVE"})

    def execute(self, context):
        task = TASKS.get(self.kind)
        if task is not None:
            task.cancel()
        return {"FINISHED"}


class SPLATWORK_OT_build_kernels(bpy.types.Operator):
    """Build gsplat's CUDA kernels for this GPU now (needs nvcc and a C++ compiler; a few minutes), so
    training starts without compiling and runs at full speed"""

    bl_idname = "splatwork.build_kernels"
    bl_label = "Build GPU Kernels"

    def execute(self, context):

        python = runtime.bridge_python()
        if not python:
            self.report({"ERROR"}, "No training environment yet: press Install Training Environment first")
            return {"CANCELLED"}
        try:
            start_task("kernel build", [build_kernels_step(python)],
                       lambda task: check_environment(python, block=False) if task.state == "completed" else None)
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class SPLATWORK_OT_check_environment(bpy.types.Operator):
    """Run the bridge Python and report which packages it has and whether CUDA works"""

    bl_idname = "splatwork.check_environment"
    bl_label = "Check Environment"

    def execute(self, context):
        try:
            task = check_environment()
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if task.state == "failed":
            self.report({"ERROR"}, f"Environment check failed: {task.error}")
            return {"CANCELLED"}
        return {"FINISHED"}


class SplatworkPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    python_path: bpy.props.StringProperty(
        name="Bridge Python",
        description="Python interpreter with PyTorch and gsplat that runs training and reconstruction; "
        "empty: detected automatically",
        subtype="FILE_PATH",
    )
    machines: bpy.props.CollectionProperty(type=remote.SplatworkMachine)

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "python_path")
        python = runtime.bridge_python()
        problem = runtime.bridge_python_problem()
        if not problem:
            col.label(text=f"In use: {python}", icon="CHECKMARK")
        elif python:  # set, but not there: say so rather than show it as in use
            box = col.box()
            box.alert = True
            box.label(text=problem, icon="ERROR")
            box.label(text="Point it at an interpreter that has torch and gsplat, or clear it to detect one.")
        else:
            box = col.box()
            box.label(text="No Python with PyTorch found.", icon="ERROR")
            box.label(text="Press 'Install Training Environment' (needs internet, 1-3 GB),")
            box.label(text="or set Bridge Python to an interpreter that has torch and gsplat.")

        running = [t for t in (TASKS.get("installation"), TASKS.get("kernel build")) if t and t.state == "running"]
        row = layout.row()
        for task in running:
            row.progress(factor=task.fraction, type="BAR", text=task.status)
            row.operator("splatwork.cancel_install", text="", icon="X").kind = task.kind
            for line in task.lines[-3:]:
                layout.label(text=line[:140])
        if not running:
            row.operator("splatwork.install_environment", icon="IMPORT")
            row.operator("splatwork.build_kernels", icon="MODIFIER")
            row.operator("splatwork.check_environment", icon="VIEWZOOM")
            for kind, title in (("installation", "Installation"), ("kernel build", "Kernel build")):
                task = TASKS.get(kind)
                if task is None or task.state not in ("failed", "cancelled"):
                    for warning in task.warnings if task is not None else ():
                        layout.label(text=warning[:200], icon="INFO")
                    continue
                box = layout.box()
                box.alert = True
                text = task.error if task.state == "failed" else (
                    "nothing half-built was kept" if kind == "kernel build" else
                    "press Install Training Environment again to finish it")
                box.label(text=f"{title} {task.state}: {text}"[:200], icon="ERROR")
                box.operator("splatwork.open_job_log", text=f"Open {title} Log").filepath = task.log_path

        check = TASKS.get("environment check")
        if check is not None and check.state == "running":
            layout.label(text="Checking the environment ...", icon="SORTTIME")
        elif CHECK_RESULT:
            box = layout.box()
            if CHECK_RESULT.get("error"):
                box.label(text=CHECK_RESULT["error"][:200], icon="ERROR")
            icons = {"ok": "CHECKMARK", "info": "INFO", "error": "ERROR"}
            for level, text in envcheck.report_lines(CHECK_RESULT):  # the words `bridge check` prints
                for i, part in enumerate(textwrap.wrap(text, 110)):
                    box.label(text=part, icon=icons[level] if i == 0 else "BLANK1")

        remote.draw_preferences(layout, self)


_classes = (*remote.classes, SPLATWORK_OT_install_environment, SPLATWORK_OT_cancel_install, SPLATWORK_OT_build_kernels,
            SPLATWORK_OT_check_environment, SplatworkPreferences)


def _cancel_tasks() -> None:
    for task in TASKS.values():
        task.cancel()  # no pip keeps writing into an environment nobody watches


def register() -> None:
    for cls in _classes:
        bpy.utils.register_class(cls)
    runtime.use_kernel_cache()
    atexit.register(_cancel_tasks)


def unregister() -> None:
    _cancel_tasks()
    atexit.unregister(_cancel_tasks)
    TASKS.clear()
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
