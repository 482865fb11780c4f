"""Command-line flags made from a job's fields: ``steps`` -> ``--steps``, with the field's help, type,
choices and default. ``python -m bridge CMD`` and ``blender --command splatwork`` both build theirs
here, so a field is a flag everywhere without being written down twice. Standard library only."""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected JSON, got {text!r}") from None


def _list_of(kind):
    def parse(text: str) -> list:
        try:
            return [kind(s) for s in text.split(",") if s.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}s separated by commas, got {text!r}") from None
    return parse


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_job_flags(parser: argparse.ArgumentParser, cls: type, names: typing.Iterable[str] | None = None,
                  defaults: dict[str, typing.Any] | None = None) -> None:
    """One flag per field of ``cls`` (those in ``names``, else every field a flag may set). Each flag's
    value is None unless given, so it overrides a job file or a preset only when given; ``defaults``
    are the values the help quotes (else the field's own default). A bool flag alone means true."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in (names if names is not None else [n for n, f in fields.items() if f.metadata.get("flag", True)]):
        f = fields[name]
        tp = hints[name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) not in (None, list, dict) and args:  # X | None
            tp = args[0]
        origin = typing.get_origin(tp)
        default = (defaults or {}).get(name, f.default if f.default is not dataclasses.MISSING else None)
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        help_text = f.metadata.get("help", "") + (f" (default {shown})" if shown not in (None, "") else "")
        kwargs: dict = {"help": help_text, "dest": name, "default": None}
        if tp is bool:
            kwargs.update(type=parse_bool, nargs="?", const=True, metavar="true|false")
        elif origin is list:
            kwargs.update(type=_list_of(typing.get_args(tp)[0]), metavar="A,B,...")
        elif origin is dict:
            kwargs.update(type=_json, metavar="JSON")
        elif f.metadata.get("choices"):
            kwargs.update(type=tp, choices=f.metadata["choices"])
        else:
            kwargs.update(type=tp)
        parser.add_argument(flag_name(name), **kwargs)
