"""``python -m bridge COMMAND ...``: the bridge's command line.

Commands are imported lazily so ``--help`` and a bad command name answer without loading torch.
"""
from __future__ import annotations

import importlib
import os
import sys

# The bridge shares the machine with Blender (and CI runs it on 2 cores): with OpenMP's default
# busy-waiting, torch's idle pool threads burn the CPU the other process needs. Must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# command -> (module relative to this package, one-line help)
COMMANDS = {
    "train": (".train.cli", "train Gaussian splats from a COLMAP model"),
    "sfm": (".sfm", "structure-from-motion: a COLMAP model from a folder of photos or a video"),
    "render": (".render", "render splats from cameras (RGBA + depth EXR passes)"),
    "check": (".check", "what this environment has and what its GPU path will do (--json; a job with --ipc)"),
    "build-kernels": (".build_kernels", "build gsplat's CUDA kernels once, so training never compiles"),
}


def usage() -> str:
    lines = ["usage: python -m bridge COMMAND [JOB.json | --job FILE | --job -] [--FIELD VALUE ...] [--ipc]",
             "", "commands:"]
    lines += [f"  {name:<14} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "file conversion: python -m bridge.formats --help"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0], __package__)
    except ModuleNotFoundError as exc:
        print(f"error: the '{name}' command is not available: {exc}", file=sys.stderr)
        return 2
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
