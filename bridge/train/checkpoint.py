"""Checkpoints: everything a run needs to continue exactly where it was, in one atomic file.

``OUT/checkpoints/last.pt`` holds the step, the parameters, every optimiser's and scheduler's state,
the strategy's running state and the random generators; it is replaced atomically, so a run killed
at any moment leaves the previous checkpoint loadable.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from ..formats.atomic import atomic_write
from ..protocol import EXIT_BAD_INPUT, BridgeError

FORMAT = 1


def checkpoint_path(out: str) -> str:
    return os.path.join(out, "checkpoints", "last.pt")


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
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
        "job": job,
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path) as fh:
        torch.save(payload, fh)


def load(path: str, device: torch.device) -> dict:
    try:
        # Our own file, holding numpy RNG state and the job dict: not loadable with weights_only.
        payload = torch.load(path, map_location=device, weights_only=False)
    except FileNotFoundError:
        raise BridgeError("missing_input", f"{path}: no checkpoint to resume from",
                          hint="Start the run without --resume.", exit_code=EXIT_BAD_INPUT) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise BridgeError("bad_input", f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})",
                          hint="Delete it and start the run again without --resume.",
                          exit_code=EXIT_BAD_INPUT) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise BridgeError("bad_input", f"{path}: not a Splatwork checkpoint (format {FORMAT})",
                          hint="Delete it and start the run again without --resume.", exit_code=EXIT_BAD_INPUT)
    return payload


def restore(payload: dict, params, optimizers, scheduler) -> tuple[int, dict]:
    """Loads a checkpoint into freshly made parameters and optimisers; returns (step, strategy state)."""
    for name, value in payload["params"].items():
        params[name] = torch.nn.Parameter(value.clone(), requires_grad=True)
    for name, opt in optimizers.items():
        # The strategies replace parameters (densification changes N): point each group at the new one.
        opt.param_groups[0]["params"] = [params[name]]
        opt.load_state_dict(payload["optimizers"][name])
    scheduler.load_state_dict(payload["scheduler"])
    _set_rng_state(payload["rng"])
    return int(payload["step"]), payload["strategy_state"]
