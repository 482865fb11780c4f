"""Setting Splatwork up: the preferences (training environment, its check, remote machines) and which
Python runs the bridge."""
from __future__ import annotations

from .. import registrar
from . import preferences

register, unregister = registrar(preferences)
