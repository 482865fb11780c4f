"""The Splatwork bridge: everything that runs outside Blender.

Never imports bpy. ``formats`` and ``protocol`` use only numpy and the standard library so the
add-on can import them; the trainer (torch, gsplat) only ever runs as a subprocess:
``python -m bridge train ...``. Inside this package, imports are relative, because inside the
installed extension it is ``bl_ext.<repo>.splatwork.bridge``.
"""
import time as _time

__version__ = "0.1.0"
STARTED = _time.perf_counter()  # when the bridge was first imported: a run's start-up is timed from here
