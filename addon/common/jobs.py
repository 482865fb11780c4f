"""Bridge commands run from Blender: one subprocess per job, its events applied on the main thread.

API (training, SfM and render passes all use it)::

    job = start_job(name, request, on_event=None, on_finish=None, *, block=None,
                    log_path=None, python=None, machine=None) -> Job
        ``request`` is a ``protocol`` job (TrainJob, SfmJob, RenderJob, CheckJob): it runs as
        ``python -m bridge CMD --job - --ipc`` (``bridge.client.bridge_command``) with the job as the first
        line on stdin, here (cwd and PYTHONPATH at ``bridge.client.CODE_ROOT``) or on ``machine`` (a
        ``bridge.client.Machine``: over ssh). ``on_event(job, event)`` gets every
        protocol event and ``on_finish(job)`` is
        called once when the process has exited and every event was applied, always on the main
        thread. ``block`` (default: ``bpy.app.background``) runs the job to its end before returning
        and prints progress; otherwise a timer (``addon.register_timer``) applies events while the UI
        stays live. Raises StartError (message + hint) when the job cannot start: no interpreter set
        up, another job of the same name still running, the interpreter cannot be executed.
    Job: name, request, argv, log_path, pid, state ("running", "completed", "stopped", "failed", "killed"),
        hello, stage, progress, snapshot, evaluation, done, error (a protocol.Error, also made up
        for a crash or a bad exit code), warnings (warning logs, a non-zero exit after Done),
        exit_code, fraction(), status_line(), message() (message + hint + log path, for reports),
        cancel() (asks the bridge to save and stop), kill(), end(grace).
        A job whose bridge sent Done is "completed" or "stopped" even if the interpreter then
        exits badly: Done comes after every output is written.
    get_job(name) -> Job | None      the latest job of that name, running or finished
    running_jobs() -> list[Job]
    pump() -> float | None           applies pending events of jobs and watched tasks; the timer callback
    watch(task)                      pumps any object with update() and state ("running" while it runs):
                                     the preferences' installs and checks use it
    end_all_jobs(grace)              stops every job, kills what does not stop in time
    format_duration(seconds) -> str   "42s", "3m 05s", "1h 02m"
    status_line(job) -> str          "Train 120/500 · loss 0.0312 · PSNR 24.10 dB · ..." for UI and console
    operator splatwork.open_job_log(name, filepath)  opens a job's log in Blender's text editor
    operator splatwork.cancel_job(name)     Cancel for any job (the status bar shows every running job)

Lifetime: a bridge process never outlives the add-on. Disabling the add-on, quitting Blender and
loading another .blend all *end* every job: the bridge is sent "stop" (it saves what it has to its
output folder, so training can be resumed), and is killed if it has not exited after a grace period.
Callbacks are not called then, because the Blender data they would update is going away. If Blender
itself dies, ``--ipc`` makes the bridge stop on end of file on its stdin.
"""
from __future__ import annotations

import atexit
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import bpy

from ...bridge import protocol
from ...bridge.client import CODE_ROOT, BridgeProcess, StartError, bridge_command, bridge_env, run_to_end
from .. import register_timer
from ..setup import runtime

_PUMP_INTERVAL = 0.1  # seconds between event polls while a job runs in the UI
_PRINT_INTERVAL = 2.0  # seconds between progress lines when blocking in the background
_END_GRACE = 10.0  # seconds a bridge gets to save and exit when the add-on goes away

_jobs: list[Job] = []
_watched: list = []  # other subprocess runners the same timer pumps (installs, checks)


class Job:
    def __init__(self, name: str, request: protocol.Job, log_path: str, on_event, on_finish,
                 process: BridgeProcess):
        self.name = name
        self.request = request
        self.process = process
        self.argv = process.argv
        self.log_path = log_path
        self.on_event: Callable[[Job, protocol.Event], None] | None = on_event
        self.on_finish: Callable[[Job], None] | None = on_finish
        self.state = "running"
        self.started = time.monotonic()
        self.ended: float | None = None
        self.hello: protocol.Hello | None = None
        self.stage = "starting"
        self.progress: protocol.Progress | None = None
        self.snapshot: protocol.Snapshot | None = None
        self.evaluation: protocol.EvalResult | None = None
        self.done: protocol.Done | None = None
        self.error: protocol.Error | None = None
        self.warnings: list[str] = []
        self.exit_code: int | None = None
        self.cancel_requested = False
        self._killed = False
        self._last_print = 0.0

    # -- state ---------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.state == "running"

    def fraction(self) -> float:
        if self.state == "completed":
            return 1.0
        if self.progress is None or self.progress.total <= 0:
            return 0.0
        return min(1.0, max(0.0, self.progress.step / self.progress.total))

    def status_line(self) -> str:
        return status_line(self)

    def message(self) -> str:
        """The failure in one paragraph: message, hint and where the log is."""
        if self.error is None:
            return ""
        text = f"{self.name} failed: {self.error.message}"
        if self.error.hint:
            text += f" ({self.error.hint})"
        return f"{text}. Log: {self.log_path}"

    # -- control -------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the bridge to save what it has and stop; the job finishes as "stopped"."""
        if self.running:
            self.cancel_requested = True
            self.process.send("stop")

    def kill(self) -> None:
        """End the process now, without saving."""
        if self.running:
            self._killed = True
            self.process.kill()

    def end(self, grace: float = _END_GRACE) -> None:
        """Stop (kill after ``grace`` seconds) without calling back: used when Blender data goes away."""
        if not self.running:
            return
        self.cancel_requested = True
        self.on_event = self.on_finish = None
        self.exit_code = self.process.stop(grace)
        self._conclude()

    # -- event handling (main thread) ----------------------------------------------------------

    def _apply(self, event: protocol.Event) -> None:
        if isinstance(event, protocol.Hello):
            self.hello = event
        elif isinstance(event, protocol.Stage):
            self.stage = event.stage
        elif isinstance(event, protocol.Progress):
            self.progress = event
            self.stage = event.stage
        elif isinstance(event, protocol.Snapshot):
            self.snapshot = event
        elif isinstance(event, protocol.EvalResult):
            self.evaluation = event
        elif isinstance(event, protocol.Log) and event.level != "info":
            self.warnings.append(event.message)
        elif isinstance(event, protocol.Done):
            self.done = event
        elif isinstance(event, protocol.Error):
            self.error = event
        if isinstance(event, (protocol.Done, protocol.Error)):
            self.process.close_stdin()
        if self.on_event is not None:
            try:
                self.on_event(self, event)
            except Exception:  # noqa: BLE001 - one bad callback must not stop the events of every job
                traceback.print_exc()

    def _update(self) -> None:
        for event in self.process.events():
            self._apply(event)
        if self.process.finished():
            for event in self.process.events():
                self._apply(event)
            self.exit_code = self.process.wait()
            self._finish()

    def _run_blocking(self) -> None:
        def on_event(event):
            self._apply(event)
            self._print(event)

        try:
            self.exit_code = run_to_end(self.process, on_event)
        except KeyboardInterrupt:
            # Ctrl-C in a headless run: save what was trained, like Cancel in the panel.
            print(f"{self.name}: interrupted, asking the bridge to save and stop ...", flush=True)
            self.cancel_requested = True
            self.exit_code = self.process.stop(_END_GRACE)
            for event in self.process.events():
                on_event(event)
        self._finish()

    def _print(self, event: protocol.Event) -> None:
        now = time.monotonic()
        if isinstance(event, protocol.Progress):
            if now - self._last_print < _PRINT_INTERVAL and event.step < event.total:
                return
            self._last_print = now
            print(self.status_line(), flush=True)
        elif isinstance(event, protocol.Stage):
            print(f"{self.name}: {event.stage.replace('_', ' ')} {event.message}".rstrip(), flush=True)
        elif isinstance(event, protocol.Log) and event.level != "info":
            print(f"{self.name}: {event.level}: {event.message}", flush=True)
        elif isinstance(event, protocol.EvalResult):
            print(f"{self.name}: eval at step {event.step}: PSNR {event.mean_psnr:.2f} dB, "
                  f"SSIM {event.mean_ssim:.4f}", flush=True)

    def _conclude(self) -> None:
        """Decide the final state from what the process said and how it exited."""
        self.ended = time.monotonic()
        self.process.close()
        if self.done is not None:
            # Done is sent after every output is written (atomically): a failure while the interpreter
            # shuts down afterwards loses nothing, so it is a warning, not a failed job.
            self.state = "stopped" if self.done.status == "stopped" else "completed"
            if self.exit_code != protocol.EXIT_OK:
                self.warnings.append(f"the bridge exited with code {self.exit_code} after finishing")
        elif self._killed:
            self.state = "killed"
        else:
            self.state = "failed"
            if self.error is None:
                self.error = _crash_error(self)

    def _finish(self) -> None:
        self._conclude()
        if self.on_finish is not None:
            try:
                self.on_finish(self)
            except Exception:  # noqa: BLE001 - the job is over either way; the traceback goes to the console
                traceback.print_exc()
        if bpy.app.background:
            if self.state == "failed":
                print(self.message(), file=sys.stderr, flush=True)
            else:
                print(f"{self.name}: {self.state} in {self.ended - self.started:.1f} s", flush=True)


def _crash_error(job: Job) -> protocol.Error:
    code = job.exit_code
    if code is not None and code < 0:
        how = f"was ended by signal {-code}"
        hint = "It was killed from outside, or crashed in a native library (running out of memory is the usual cause)."
    elif code == protocol.EXIT_OK:
        how, hint = "exited without reporting a result", "This is a bug in Splatwork."
    elif code == protocol.EXIT_BAD_INPUT:
        how, hint = "refused its input (exit code 2)", "Check the settings and input files."
    else:
        how, hint = f"exited with code {code}", "The log has the details."
    lines = [line.strip() for line in job.process.log_tail(2000).splitlines() if line.strip()]
    telling = [line for line in lines if "error" in line.lower()] or lines
    said = f": {telling[-1]}" if telling else ""
    return protocol.Error(kind="crashed", message=f"the bridge process {how}{said}", hint=hint)


# ---------------------------------------------------------------------------------------------
# Starting jobs


def start_job(
    name: str,
    request: protocol.Job,
    on_event: Callable[[Job, protocol.Event], None] | None = None,
    on_finish: Callable[[Job], None] | None = None,
    *,
    block: bool | None = None,
    log_path: str | None = None,
    python: str | None = None,
    machine=None,
) -> Job:
    previous = get_job(name)
    if previous is not None and previous.running:
        raise StartError(f"a {name} job is already running", "Cancel it first, or wait for it to finish.")
    if log_path is None:
        log_path = os.path.join(runtime.log_dir(), f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
    process = machine.start(request, log_path) if machine is not None else _start_here(request, log_path, python)
    job = Job(name, request, log_path, on_event, on_finish, process)
    _jobs[:] = [j for j in _jobs if j.name != name]
    _jobs.append(job)
    if bpy.app.background if block is None else block:
        job._run_blocking()
    else:
        register_timer(pump, first_interval=_PUMP_INTERVAL, persistent=True)
    return job


def _start_here(request: protocol.Job, log_path: str, python: str | None) -> BridgeProcess:
    python = python or runtime.bridge_python()
    if not python:
        raise StartError(
            "no Python environment with PyTorch is set up for Splatwork",
            "Edit > Preferences > Add-ons > Splatwork: press 'Install training environment', "
            "or point 'Bridge Python' at an interpreter that has torch and gsplat.",
        )
    if not os.path.isfile(python):
        raise StartError(f"the bridge Python '{python}' does not exist", "Fix 'Bridge Python' in the preferences.")
    try:
        return BridgeProcess(bridge_command(python, request.command), log_path, cwd=CODE_ROOT, env=bridge_env(),
                             job=request.to_json())
    except OSError as exc:
        raise StartError(f"could not start the bridge with '{python}': {exc}",
                       "Check 'Bridge Python' in the preferences.") from exc


def get_job(name: str) -> Job | None:
    for job in reversed(_jobs):
        if job.name == name:
            return job
    return None


def running_jobs() -> list[Job]:
    return [job for job in _jobs if job.running]


def watch(task) -> None:
    """Pump ``task`` (``update()``, ``state``) with the jobs until its state is no longer "running"."""
    if task not in _watched:
        _watched.append(task)
    register_timer(pump, first_interval=_PUMP_INTERVAL, persistent=True)


def pump() -> float | None:
    """Apply pending events of every running job and watched task; reschedules itself while any runs."""
    for job in running_jobs():
        job._update()
    for task in list(_watched):
        if task.state == "running":
            task.update()
        if task.state != "running":
            _watched.remove(task)
    if not bpy.app.background:
        _redraw()
    return _PUMP_INTERVAL if running_jobs() or _watched else None


def end_all_jobs(grace: float = _END_GRACE) -> None:
    for job in running_jobs():
        job.cancel_requested = True
        job.process.send("stop")  # all of them save in parallel, then each gets the grace period
    for job in running_jobs():
        job.end(grace)


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "STATUSBAR", "PROPERTIES", "IMAGE_EDITOR", "PREFERENCES"}:
                area.tag_redraw()


# ---------------------------------------------------------------------------------------------
# Text for the UI and the console


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def status_line(job: Job) -> str:
    title = job.name.replace("_", " ").capitalize()
    if job.state != "running":
        return f"{title}: {job.state}"
    p = job.progress
    if p is None:
        return f"{title}: {job.stage.replace('_', ' ')}"
    parts = [f"{title} {p.step}/{p.total}"]
    if p.loss is not None:
        parts.append(f"loss {p.loss:.4f}")
    if p.psnr is not None:
        parts.append(f"PSNR {p.psnr:.2f} dB")
    if p.num_splats is not None:
        parts.append(f"{p.num_splats:,} splats")
    if p.images_registered is not None:
        parts.append(f"{p.images_registered} registered")
    if p.eta_sec is not None:
        parts.append(f"ETA {format_duration(p.eta_sec)}")
    if job.hello is not None and job.hello.device.startswith("cuda") and job.hello.backend == "torch":
        parts.append("GPU, no-compile rasterizer (slower)")  # the panel and the log say why
    return " · ".join(parts)


def _draw_status_bar(self, context) -> None:
    for job in running_jobs():
        row = self.layout.row(align=True)
        row.progress(factor=job.fraction(), type="BAR", text=status_line(job))
        row.operator("splatwork.cancel_job", text="", icon="X").name = job.name


class SPLATWORK_OT_cancel_job(bpy.types.Operator):
    """Ask a running bridge job to save what it has and stop"""

    bl_idname = "splatwork.cancel_job"
    bl_label = "Cancel Job"
    bl_options = {"INTERNAL"}

    name: bpy.props.StringProperty()

    def execute(self, context):
        job = get_job(self.name)
        if job is None or not job.running:
            self.report({"WARNING"}, f"No running job named '{self.name}'")
            return {"CANCELLED"}
        job.cancel()
        return {"FINISHED"}


class SPLATWORK_OT_open_job_log(bpy.types.Operator):
    """Open the log of a bridge job in Blender's text editor"""

    bl_idname = "splatwork.open_job_log"
    bl_label = "Open Log"
    bl_options = {"INTERNAL"}

    name: bpy.props.StringProperty(description="Job name")
    filepath: bpy.props.StringProperty(description="Log file, when the job is from an earlier session")

    def execute(self, context):
        job = get_job(self.name)
        path = self.filepath or (job.log_path if job else "")
        if not path or not os.path.isfile(path):
            self.report({"ERROR"}, f"No log found for '{self.name}' ({path or 'never started'})")
            return {"CANCELLED"}
        text = next((t for t in bpy.data.texts if t.filepath == path), None)
        if text is None:
            text = bpy.data.texts.load(path)
        else:
            text.clear()
            text.write(Path(path).read_text(errors="replace"))
        shown = False
        for window in context.window_manager.windows:
            for area in window.screen.areas:
                if area.type == "TEXT_EDITOR":
                    area.spaces.active.text = text
                    shown = True
        if not shown and not bpy.app.background:
            bpy.ops.wm.path_open(filepath=path)  # no text editor open: the system's viewer shows it
        self.report({"INFO"}, f"Log loaded as text '{text.name}'")
        return {"FINISHED"}


# ---------------------------------------------------------------------------------------------
# Registration and cleanup


@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    end_all_jobs()


def _on_exit() -> None:
    end_all_jobs(grace=5.0)


_classes = (SPLATWORK_OT_cancel_job, SPLATWORK_OT_open_job_log)


def register() -> None:
    for cls in _classes:
        bpy.utils.register_class(cls)
    bpy.app.handlers.load_pre.append(_on_load_pre)
    bpy.types.STATUSBAR_HT_header.append(_draw_status_bar)
    atexit.register(_on_exit)


def unregister() -> None:
    end_all_jobs()
    atexit.unregister(_on_exit)
    bpy.types.STATUSBAR_HT_header.remove(_draw_status_bar)
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
    _jobs.clear()
