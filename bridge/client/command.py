"""The one bridge command line, here or on another machine: ``python -m bridge CMD --job - --ipc``, the job
as the first line on stdin, run from the folder that holds ``bridge/``."""
from __future__ import annotations

import os
from pathlib import Path

# The folder that holds bridge/ (the extension's root): ``python -m bridge`` works from here.
CODE_ROOT = str(Path(__file__).resolve().parents[2])


def bridge_args(command: str) -> list[str]:
    """What follows the interpreter: the job comes first on stdin; end of file there stops the run."""
    return ["-m", "bridge", command, "--job", "-", "--ipc"]


def bridge_command(python: str, command: str) -> list[str]:
    """The argument list that runs a bridge command on this machine with ``python``."""
    return [python, *bridge_args(command)]


def bridge_env(root: str = CODE_ROOT, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a local bridge: ``root`` first on PYTHONPATH, unbuffered, no foreign PYTHONHOME."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([root, env["PYTHONPATH"]]) if env.get("PYTHONPATH") else root
    env["PYTHONUNBUFFERED"] = "1"
    # Blender's own Python home must not leak into a different interpreter.
    env.pop("PYTHONHOME", None)
    return env


def tool_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """For interpreters that are not the bridge (pip, venv): none of the caller's Python paths."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONHOME", None)
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env
