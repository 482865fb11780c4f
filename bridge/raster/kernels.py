"""Can gsplat's CUDA kernels load? The one place that asks, and where a built copy of them is kept.

gsplat 1.5.3 on PyPI ships no binaries: on first use it JIT-compiles its kernels into torch's extension
cache (``<root>/py311_cu130/gsplat_cuda``, ``py311_cu128`` for torch's CUDA 12.8 build), which needs nvcc
and a C++ compiler and takes minutes.
Splatwork builds them once, during set-up (``python -m bridge build-kernels``), and afterwards loads
the built library directly as gsplat's prebuilt module ``gsplat.csrc``: loading never compiles and needs
no CUDA toolkit. When they cannot load, :func:`kernels_unavailable` says why and the caller runs our
PyTorch rasterizer on the same GPU instead.

Test hook: ``SPLATWORK_GSPLAT_KERNELS=off`` in the environment makes the kernels unavailable, through
this same code path, for testing the fallback.
"""
from __future__ import annotations

import importlib.util
import os
import sys

NAME = "gsplat_cuda"  # the extension name gsplat's JIT builds
FORCE_ENV = "SPLATWORK_GSPLAT_KERNELS"
HOW_TO_GET = ("Preferences > Add-ons > Splatwork > Build GPU Kernels (or: python -m bridge build-kernels) "
              "builds them once")

_probe: str | None = None  # "" when loaded, else why not; probed once per process


def library_file() -> str:
    return NAME + (".pyd" if os.name == "nt" else ".so")


def extensions_root() -> str:
    """torch's extension cache for this Python and this torch build (what its JIT uses)."""
    import torch
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return root
    accel = f"cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else "cpu"
    return os.path.join(get_default_build_root(), f"py{sys.version_info.major}{sys.version_info.minor}_{accel}")


def build_dir() -> str:
    return os.path.join(extensions_root(), NAME)


def built_library() -> str | None:
    path = os.path.join(build_dir(), library_file())
    return path if os.path.isfile(path) else None


def kernels_unavailable() -> str:
    """"" when gsplat's kernels are loaded and ready, else why not (one sentence). Never compiles."""
    global _probe
    if _probe is None:
        _probe = _load()
    return _probe


def _load() -> str:
    if os.environ.get(FORCE_ENV, "").lower() in ("0", "off", "no", "false"):
        return f"gsplat's kernels are turned off ({FORCE_ENV}={os.environ[FORCE_ENV]})"
    import torch

    if not torch.cuda.is_available():
        return "CUDA is not available to torch"
    try:
        import gsplat
    except Exception as exc:  # noqa: BLE001 - a broken install is a reason, not a crash
        return f"gsplat does not import ({type(exc).__name__}: {exc})"
    if importlib.util.find_spec("gsplat.csrc") is None:
        library = built_library()
        if library is None:
            return "gsplat's CUDA kernels are not built yet"
        try:
            spec = importlib.util.spec_from_file_location(NAME, library)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - e.g. built for another torch: rebuild
            return f"the built kernels in {os.path.dirname(library)} do not load ({exc}); build them again"
        sys.modules["gsplat.csrc"] = module  # gsplat's own "prebuilt module" hook: no JIT from here on
        gsplat.csrc = module
    try:
        from gsplat.cuda._backend import _C
    except Exception as exc:  # noqa: BLE001
        return f"gsplat's kernels do not load ({type(exc).__name__}: {exc})"
    return "" if _C is not None else "gsplat's kernels do not load"


def fallback_notice(reason: str) -> str:
    """What the artist sees when training or rendering falls back to our rasterizer on the GPU."""
    return (f"Using the PyTorch rasterizer on the GPU (no compile): {reason}. It is much slower: a "
            f"training step takes 30-50 times as long as with gsplat's CUDA kernels; {HOW_TO_GET}.")


def reset() -> None:
    """Probe again (after a build)."""
    global _probe
    _probe = None
