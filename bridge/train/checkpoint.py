"""Checkpoints: everything a run needs to continue exactly where it was, in one atomic file.

``OUT/checkpoints/last.pt`` holds the step, the parameters, every optimiser's and scheduler's state,
the strategy's running state and the random generators; it is replaced atomically, so a run killed
at any moment leaves the previous checkpoint loadable.

The file holds tensors, numbers, strings, lists and dicts only (the job as JSON text, numpy's
generator state as a tensor), so it is read with ``torch.load(weights_only=True)``: loading a
checkpoint can never run code, whoever put the file there. Everything is checked before use, so a
damaged or foreign file is refused naming the file rather than failing mid-run.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import re
import zipfile

import numpy as np
import torch

from ..formats.atomic import atomic_write
from ..protocol import EXIT_BAD_INPUT, BridgeError

FORMAT = 2  # format 1 pickled numpy's generator state, so it could only be read with weights_only=False
KEYS = ("format", "step", "params", "optimizers", "scheduler", "strategy_state", "rng", "job")
_NEW_RUN = "Delete it and start the run again without --resume."


def checkpoint_path(out: str) -> str:
    return os.path.join(out, "checkpoints", "last.pt")


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: str, *, step: int, params, optimizers, scheduler, strategy_state, job: dict) -> None:
    payload = {
        "format": FORMAT,
        "step": step,
        "params": {k: v.detach() for k, v in params.items()},
        "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
        "scheduler": scheduler.state_dict(),
        "strategy_state": strategy_state,
        "rng": _rng_state(),
        "job": json.dumps(job),
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path) as fh:
        recorder = _WriteErrors(fh)
        try:
            torch.save(payload, recorder)
        except RuntimeError:
            # torch's zip writer reports a failed file write as "unexpected pos N vs M"; the OSError
            # (no space left, with its errno) is the real cause, and atomic_write adds the path.
            if recorder.error is not None:
                raise recorder.error from None
            raise


class _WriteErrors:
    """A file wrapper that remembers the OSError of a failed write, which torch.save would hide."""

    def __init__(self, fh):
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self._fh.flush()


def _refuse(path: str, problem: str, hint: str = _NEW_RUN, kind: str = "bad_input") -> BridgeError:
    return BridgeError(kind, f"{path}: {problem}", hint=hint, exit_code=EXIT_BAD_INPUT)


def load(path: str, device: torch.device) -> dict:
    """The checkpoint at ``path``, read without running any code it might hold; see :func:`restore`."""
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise _refuse(path, "no checkpoint to resume from", "Start the run without --resume.",
                      kind="missing_input") from None
    except pickle.UnpicklingError as exc:
        # Refused by the weights-only reader: the file needs Python objects to be built, so loading
        # it would run code. torch's message (it suggests weights_only=False) is not passed on.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found and found.group(1).startswith("numpy.") and zipfile.is_zipfile(path):
            raise _refuse(path, "a checkpoint of an older Splatwork (format 1), which cannot be read "
                          "safely", "Start the run again without --resume; the run's splats.ply is still "
                          "usable.") from None
        what = f"Python objects ({found.group(1)})" if found else "Python objects"
        raise _refuse(path, f"not loaded: it holds {what} that would run code when loaded, which a "
                      "Splatwork checkpoint never does", "Delete the file, and find out how it got "
                      "there; then start the run again without --resume.") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise _refuse(path, f"unreadable checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(payload, dict) or "format" not in payload:
        raise _refuse(path, f"not a Splatwork checkpoint (format {FORMAT})")
    if not isinstance(payload["format"], int) or payload["format"] != FORMAT:
        raise _refuse(path, f"checkpoint format {payload['format']!r}; this Splatwork reads format {FORMAT}")
    missing = [k for k in KEYS if k not in payload]
    if missing:
        raise _refuse(path, f"incomplete checkpoint: no {', '.join(repr(k) for k in missing)}")
    try:
        payload["job"] = json.loads(payload["job"])
    except (TypeError, ValueError):
        raise _refuse(path, "incomplete checkpoint: its job is not JSON text") from None
    return payload


def _check(path: str, payload: dict, params) -> None:
    saved = payload["params"]
    if not isinstance(saved, dict) or set(saved) != set(params) or not all(
            isinstance(v, torch.Tensor) and v.is_floating_point() for v in saved.values()):
        raise _refuse(path, f"its parameters are not the tensors {', '.join(params)}")
    n = saved["means"].shape[0] if saved["means"].ndim else -1
    for name, value in saved.items():
        if value.ndim == 0 or value.shape[0] != n or value.shape[1:] != params[name].shape[1:]:
            raise _refuse(path, f"parameter {name!r} has shape {tuple(value.shape)}, expected "
                          f"{(n, *params[name].shape[1:])}")
        if not bool(torch.isfinite(value).all()):
            raise _refuse(path, f"parameter {name!r} holds NaN or infinite values (the run had diverged)",
                          "Start the run again without --resume, with lower learning rates or another seed.")
    optimizers = payload["optimizers"]
    if not isinstance(optimizers, dict) or set(optimizers) != set(params):
        raise _refuse(path, f"its optimiser states are not those of {', '.join(params)}")
    for name, state in optimizers.items():
        entries = state.get("state") if isinstance(state, dict) else None
        if not isinstance(entries, dict) or not isinstance(state.get("param_groups"), list):
            raise _refuse(path, f"the optimiser state of {name!r} is malformed")
        for entry in entries.values():
            for key in ("exp_avg", "exp_avg_sq"):
                value = entry.get(key) if isinstance(entry, dict) else None
                if not isinstance(value, torch.Tensor) or value.shape != saved[name].shape:
                    raise _refuse(path, f"the optimiser state {key!r} of {name!r} does not match the parameter")
    strategy_state = payload["strategy_state"]
    if not isinstance(strategy_state, dict):
        raise _refuse(path, "its strategy state is malformed")
    for key in ("grad2d", "count", "radii"):  # DefaultStrategy's per-splat running sums
        value = strategy_state.get(key)
        if value is not None and (not isinstance(value, torch.Tensor) or value.shape[:1] != (n,)):
            raise _refuse(path, f"the strategy state {key!r} does not match the {n} splats")
    if not isinstance(payload["step"], int) or payload["step"] < 0:
        raise _refuse(path, f"its step {payload['step']!r} is not a step number")


def restore(path: str, payload: dict, params, optimizers, scheduler) -> tuple[int, dict]:
    """Loads a checkpoint into freshly made parameters and optimisers; returns (step, strategy state).

    Anything that does not fit (a damaged or hand-edited file) is refused naming ``path``.
    """
    _check(path, payload, params)
    try:
        for name, value in payload["params"].items():
            params[name] = torch.nn.Parameter(value.clone(), requires_grad=True)
        for name, opt in optimizers.items():
            # The strategies replace parameters (densification changes N): point each group at the new one.
            opt.param_groups[0]["params"] = [params[name]]
            opt.load_state_dict(payload["optimizers"][name])
        scheduler.load_state_dict(payload["scheduler"])
        _set_rng_state(payload["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
        raise _refuse(path, f"its saved state does not fit this run ({type(exc).__name__}: {exc})") from None
    return payload["step"], payload["strategy_state"]
