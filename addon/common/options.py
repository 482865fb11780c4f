"""Blender properties made from a bridge job's fields (``bridge/protocol/jobs.py``): the label, the
tooltip, the bounds, the menu of choices and the default all come from the field's metadata, so a
training, SfM or render option is defined once, as a job field. The panels draw what
``protocol.jobs.panel_fields`` names; ``blender --command splatwork`` makes its flags from the same
fields (``protocol.flags``)."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

import bpy

INT_MAX = 2**31 - 1  # Blender's int properties are 32-bit


def job_property(cls: type, name: str, default: Any = dataclasses.MISSING, update=None):
    """The Blender property for field ``name`` of job class ``cls`` (``default`` instead of the field's)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    meta = f.metadata
    if default is dataclasses.MISSING:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    tp = typing.get_type_hints(cls)[name]
    common: dict[str, Any] = {"name": meta.get("label") or name.replace("_", " ").title(),
                              "description": _sentence(meta.get("help", ""))}
    if update is not None:
        common["update"] = update
    low, high = meta.get("low"), meta.get("high")
    if tp is bool:
        return bpy.props.BoolProperty(default=default, **common)
    if tp is int:
        return bpy.props.IntProperty(default=default, min=int(low) if low is not None else -INT_MAX,
                                     max=int(min(high, INT_MAX)) if high is not None else INT_MAX, **common)
    if tp is float:
        bounds = {"min": low} if low is not None else {}
        if high is not None:
            bounds["max"] = high
        return bpy.props.FloatProperty(default=default, **bounds, **common)
    if tp is str and meta.get("choices"):
        text = meta.get("choice_text") or {}
        items = [(c, *text.get(c, (c.replace("-", " ").title(), ""))) for c in meta["choices"]]
        return bpy.props.EnumProperty(items=items, default=default, **common)
    if typing.get_origin(tp) is list and meta.get("ui") == "color":
        return bpy.props.FloatVectorProperty(subtype="COLOR", size=len(default), default=tuple(default),
                                             min=low if low is not None else 0.0,
                                             max=high if high is not None else 1.0, **common)
    raise TypeError(f"{cls.__name__}.{name}: no Blender property for {tp}")


def job_properties(cls: type, names, defaults: dict[str, Any] | None = None, update=None) -> dict[str, Any]:
    """``{name: property}`` for each field in ``names``, for a PropertyGroup's ``__annotations__``."""
    defaults = defaults or {}
    return {name: job_property(cls, name, defaults.get(name, dataclasses.MISSING), update) for name in names}


def job_values(settings, cls: type) -> dict[str, Any]:
    """The values of every field of ``cls`` that ``settings`` (a PropertyGroup) has a property for."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in settings.bl_rna.properties:
            value = getattr(settings, f.name)
            values[f.name] = value if isinstance(value, (str, int, float, bool)) else list(value)
    return values


def _sentence(text: str) -> str:
    """A flag's help as a tooltip: a capital first letter, as Blender's tooltips have."""
    return text[:1].upper() + text[1:] if text else ""
