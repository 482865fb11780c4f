"""The one owner of what goes between a client (Blender, a person, a remote session) and a bridge process.

``messages``: events (bridge -> client, JSON lines on stdout), commands (client -> bridge, JSON lines
on stdin), exit codes, and both ends of the pipe. ``jobs``: what each command is asked to do, one
dataclass per command, sent as the first line on stdin (``--job -``) or read from a file. Standard
library only: the add-on imports this inside Blender.
"""
from .jobs import (
    JOB_TYPES,
    TRAIN_PRESETS,
    CheckJob,
    Job,
    JobError,
    RenderFrame,
    RenderJob,
    RenderObject,
    SfmJob,
    TrainJob,
    TrainPreset,
    job_from_dict,
    job_from_json,
)
from .messages import *  # noqa: F403 - the events, commands and pipes are this package's API
from .messages import __all__ as _messages_all

__all__ = [*_messages_all, "JOB_TYPES", "CheckJob", "Job", "JobError", "RenderFrame", "RenderJob",
           "RenderObject", "SfmJob", "TrainJob", "TrainPreset", "TRAIN_PRESETS", "job_from_dict",
           "job_from_json"]
