"""Remote machines in Blender: their settings in the preferences, their Check, and the choice of
machine for a job. The ssh transport itself (upload, the bridge over ssh, fetching results) is
``bridge.client.ssh`` and needs no Blender; this module hands it the images reduced by Blender
(``remote_images``) and runs its checks as jobs.
"""
from __future__ import annotations

import bpy

from ...bridge import protocol
from ...bridge.client import Machine, RemoteError, StartError
from . import remote_images


class SplatworkMachine(bpy.types.PropertyGroup):
    # ``name`` (the PropertyGroup's own) is what jobs refer to.
    host: bpy.props.StringProperty(name="SSH Host", description="user@host, a host name, or an alias from "
                                   "~/.ssh/config; ssh must log in without a password prompt (a key or an agent)")
    python: bpy.props.StringProperty(name="Remote Python", default="python3",
                                     description="The Python there that has torch and gsplat (e.g. ~/venv/bin/python)")
    workdir: bpy.props.StringProperty(name="Remote Folder", default="~/splatwork",
                                      description="Where Splatwork keeps the code, the data and the runs there")
    ssh_config: bpy.props.StringProperty(name="SSH Config", subtype="FILE_PATH",
                                         description="An ssh config file to use instead of ~/.ssh/config (optional)")


def machines() -> list:
    from ..setup import runtime

    p = runtime.prefs()
    return list(p.machines) if p is not None and hasattr(p, "machines") else []


def machine_named(name: str) -> Machine | None:
    """The machine called ``name`` in the preferences (None for "" = this computer); RemoteError if unknown."""
    if not name:
        return None
    for m in machines():
        if m.name == name:
            if not m.host:
                raise RemoteError(f"machine '{name}' has no SSH host", "Set it in Preferences > Splatwork.")
            return machine(m.name, m.host, m.python or "python3", m.workdir or "~/splatwork",
                           bpy.path.abspath(m.ssh_config) if m.ssh_config else "")
    raise RemoteError(f"no remote machine named '{name}'", "Add it in Preferences > Splatwork > Remote Machines, "
                      "or choose This Computer.")


def machine(name: str, host: str, python: str, workdir: str, ssh_config: str = "") -> Machine:
    """A remote machine whose training runs get their images reduced here, by Blender, at the size they
    train at (``remote_images``)."""
    return Machine(name, host, python, workdir, ssh_config, reduce_images=remote_images.training_images)


def check(target: Machine, block: bool | None = None, on_finish=None):
    """Run the environment check there (``python -m bridge check``) as a job named "check <name>"."""
    from ..common import jobs

    return jobs.start_job(f"check {target.name}", protocol.CheckJob(), on_finish=on_finish, block=block,
                          machine=target)


def machine_property():
    """The "Machine" setting of a job: a remote machine's name, empty for this computer."""
    return bpy.props.StringProperty(
        name="Machine", search=lambda _self, _context, _text: [m.name for m in machines()],
        description="Run on a remote machine (Preferences > Splatwork > Remote Machines); empty: this computer")


CHECKS: dict[str, dict] = {}  # machine name -> the last check's answer (or {"error": ..., "hint": ...})


class SPLATWORK_OT_add_machine(bpy.types.Operator):
    """Add a remote machine that runs training, reconstruction and render passes over SSH"""

    bl_idname = "splatwork.add_machine"
    bl_label = "Add Remote Machine"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        from ..setup import runtime

        p = runtime.prefs()
        m = p.machines.add()
        m.name = f"machine {len(p.machines)}"
        return {"FINISHED"}


class SPLATWORK_OT_remove_machine(bpy.types.Operator):
    """Remove this remote machine (nothing on it is touched)"""

    bl_idname = "splatwork.remove_machine"
    bl_label = "Remove Remote Machine"
    bl_options = {"INTERNAL"}

    index: bpy.props.IntProperty()

    def execute(self, context):
        from ..setup import runtime

        runtime.prefs().machines.remove(self.index)
        return {"FINISHED"}


class SPLATWORK_OT_check_machine(bpy.types.Operator):
    """Run the environment check on this machine: can it be reached, and does its Python have torch and gsplat"""

    bl_idname = "splatwork.check_machine"
    bl_label = "Check"
    bl_options = {"INTERNAL"}

    name: bpy.props.StringProperty()

    def execute(self, context):
        CHECKS.pop(self.name, None)
        try:
            job = check(machine_named(self.name), on_finish=lambda job: _record_check(self.name, job))
        except StartError as exc:
            CHECKS[self.name] = {"error": exc.message, "hint": exc.hint}
            self.report({"ERROR"}, f"{exc.message}. {exc.hint}")
            return {"CANCELLED"}
        if not job.running and self.name in CHECKS and CHECKS[self.name].get("error"):
            self.report({"ERROR"}, f"{CHECKS[self.name]['error']}. {CHECKS[self.name].get('hint', '')}")
            return {"CANCELLED"}
        return {"FINISHED"}


def _record_check(name: str, job) -> None:
    CHECKS[name] = result = check_result(job)
    if not result.get("error"):
        print(f"Splatwork: {name}: {result.get('summary')}", flush=True)


def check_result(job) -> dict:
    """What a finished check job says, with an error and a hint when the machine cannot train."""
    if job.done is None:
        error = job.error or protocol.Error(kind="crashed", message=f"the check {job.state}")
        return {"error": error.message, "hint": error.hint}
    info = dict(job.done.metrics)
    missing = info.get("missing") or []
    if "torch" in missing or "gsplat" in missing:
        info["error"] = f"the Python there ({info.get('executable')}) lacks {', '.join(missing)}"
        info["hint"] = ("Install Splatwork's training packages there (requirements.txt: torch, gsplat, pycolmap, "
                        "plyfile, numpy, pytorch-msssim, pillow) or set Remote Python to one that has them.")
    gpu = f"CUDA: {info.get('device')}" if info.get("cuda") else "no CUDA (CPU training)"
    info["summary"] = f"Python {info.get('python')}, torch {info.get('packages', {}).get('torch')}, {gpu}"
    return info


def draw_preferences(layout, prefs) -> None:
    box = layout.box()
    row = box.row()
    row.label(text="Remote Machines (SSH)", icon="NETWORK_DRIVE")
    row.operator("splatwork.add_machine", text="", icon="ADD")
    for i, m in enumerate(prefs.machines):
        col = box.column(align=True)
        row = col.row(align=True)
        row.prop(m, "name", text="")
        row.operator("splatwork.check_machine", icon="VIEWZOOM").name = m.name
        row.operator("splatwork.remove_machine", text="", icon="X").index = i
        col.prop(m, "host")
        col.prop(m, "python")
        col.prop(m, "workdir")
        col.prop(m, "ssh_config")
        check = CHECKS.get(m.name)
        if check is None:
            continue
        if check.get("error"):
            col.label(text=check["error"][:200], icon="ERROR")
            if check.get("hint"):
                col.label(text=check["hint"][:200])
        else:
            col.label(text=check["summary"][:200], icon="CHECKMARK")


classes = (SplatworkMachine, SPLATWORK_OT_add_machine, SPLATWORK_OT_remove_machine, SPLATWORK_OT_check_machine)
