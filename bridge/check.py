"""``python -m bridge check``: what this interpreter has (``envcheck.check()``) as a Done event's metrics.

The same answer as running ``bridge/envcheck.py`` by path, but through the protocol, so a client that
reaches the bridge only through its stdio (another machine over SSH) can ask it too.
"""
from __future__ import annotations

import platform

from .envcheck import check
from .protocol import CheckJob, Done
from .runner import RunContext
from .runner import main as command_main


def run(ctx: RunContext, job: CheckJob) -> Done:
    info = check()
    ctx.hello(device=info.get("device") or "cpu", versions={k: v for k, v in info["packages"].items() if v}
              | {"python": platform.python_version()})
    missing = [name for name, version in info["packages"].items() if not version]
    return Done(status="completed", metrics={**info, "missing": missing})


def main(argv: list[str]) -> int:
    """With a job (``--ipc``, ``--job``): the protocol's answer; plain or ``--json``: the report for a
    person or a program (``envcheck.main``)."""
    if "--ipc" in argv or "--job" in argv or any(a.endswith(".json") for a in argv):
        return command_main(CheckJob, run, argv, __doc__.split("\n")[0])
    from .envcheck import main as report_main

    return report_main(argv)
