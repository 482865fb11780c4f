"""The training job: :class:`~..protocol.jobs.TrainJob`, read and checked by the protocol's validator.

``make_job(values)`` is that validator plus what only the bridge's machine can decide: paths made
absolute against the bridge's working folder.
"""
from __future__ import annotations

import os
from typing import Any

from ..protocol.jobs import INITS, STRATEGIES, TRAIN_DEVICES, JobError, TrainJob, job_from_dict

DEVICES = TRAIN_DEVICES
__all__ = ["DEVICES", "INITS", "STRATEGIES", "TrainJob", "bad_job", "make_job", "absolute_paths"]


def bad_job(name: str, problem: str, hint: str = "") -> JobError:
    return JobError(name, problem, hint)


def absolute_paths(job: TrainJob) -> TrainJob:
    for name in ("model", "images", "out"):
        setattr(job, name, os.path.abspath(os.path.expanduser(getattr(job, name))))
    return job


def make_job(values: dict[str, Any]) -> TrainJob:
    """A validated job from field values (JSON types); unknown and missing fields are errors."""
    return absolute_paths(job_from_dict(TrainJob, values))
