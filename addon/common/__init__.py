"""What every part of the add-on shares: bridge jobs run from Blender, version checks, one-line reports."""
from __future__ import annotations

from .. import registrar
from . import jobs

register, unregister = registrar(jobs)
