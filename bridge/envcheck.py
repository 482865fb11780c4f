"""What the bridge interpreter has, and whether CUDA works, as one JSON line on stdout.

The add-on's *Check Environment* runs this file by path with the chosen interpreter (so it needs no
import path and no package around it): ``python bridge/envcheck.py``. Standard library only at the
top; each package is tried on its own so one broken install does not hide the others.
"""
from __future__ import annotations

import importlib
import json
import platform
import sys

MARKER = "SPLATWORK-CHECK "
PACKAGES = ("torch", "gsplat", "pycolmap", "plyfile", "numpy", "pytorch_msssim", "PIL")


def check() -> dict:
    info: dict = {"python": platform.python_version(), "executable": sys.executable, "packages": {}}
    for name in PACKAGES:
        try:
            info["packages"][name] = getattr(importlib.import_module(name), "__version__", "installed")
        except Exception:  # noqa: BLE001 - any failure means "not usable", reported as missing
            info["packages"][name] = None
    try:
        torch = importlib.import_module("torch")  # by name: this module stays importable inside Blender
        info["cuda"] = bool(torch.cuda.is_available())
        info["device"] = torch.cuda.get_device_name(0) if info["cuda"] else ""
        info["cuda_version"] = torch.version.cuda or ""
    except Exception as exc:  # noqa: BLE001 - a broken torch is exactly what this check reports
        info["cuda"], info["device"], info["cuda_error"] = False, "", str(exc)
    return info


if __name__ == "__main__":
    print(MARKER + json.dumps(check()), flush=True)
