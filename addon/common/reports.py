"""Turning any exception into the one line an operator reports: operators never raise tracebacks.

The errors Splatwork expects (FormatError, SplatLayoutError, bad paths, bad settings) already name the
file or setting and the problem, so their text stands alone; anything else is unexpected and keeps
its type, so the report still says what broke.
"""
from __future__ import annotations

EXPECTED = (ValueError, OSError, RuntimeError)  # FormatError and SplatLayoutError are ValueErrors


def failure(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, EXPECTED) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
