"""Training from Blender: the settings on the scene, the train/cancel/resume operators, the sidebar panel.

``start_training(scene, resume=False, block=None) -> jobs.Job`` is the one entry point: the operator,
the panel and the headless command (``cli.py``) all call it. It runs ``python -m bridge train`` as a
job (``jobs.py``), mirrors progress into ``scene.splatwork_training``, keeps a live splat object
updated in place from the snapshots and imports the final splats when the bridge is done.
"""
from __future__ import annotations

from .. import registrar
from . import operators, panel, settings
from .run import TrainingError, dataset_paths, start_training

__all__ = ["TrainingError", "dataset_paths", "start_training"]

register, unregister = registrar(settings, operators, panel)
