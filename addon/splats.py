"""Placeholder: filled in by the work on this area (see docs/DEVELOPING.md)."""


def register():
    pass


def unregister():
    pass
