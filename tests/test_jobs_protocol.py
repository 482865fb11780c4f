"""Typed requests (``bridge/protocol/jobs.py``): every command's job round-trips through JSON, the one
validator names the bad field, flags map onto the same fields, and every bridge command takes its job
from a file or stdin and turns a bad one into an Error event with exit code 2."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from conftest import ROOT

from bridge import protocol
from bridge.protocol import jobs
from bridge.runner import job_parser, read_job

FRAME = {"frame": 1, "width": 8, "height": 6, "K": [[8, 0, 4], [0, 8, 3], [0, 0, 1]],
         "world_to_camera": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "clip_start": 0.1,
         "clip_end": 10.0, "object_matrices": [[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]]}
GOOD = {
    "train": {"model": "/m", "images": "/i", "out": "/o", "steps": 7, "background": [1, 0.5, 0],
              "strategy_options": {"refine_every": 50}, "eval_steps": [3]},
    "sfm": {"out": "/o", "video": "/v.mp4", "every": 5, "max_size": 640},
    "render": {"output_dir": "/r", "objects": [{"splats": "/s.ply", "name": "S"}], "frames": [FRAME]},
    "check": {},
}


@pytest.mark.parametrize("command", sorted(protocol.JOB_TYPES))
def test_every_job_round_trips_through_json(command):
    cls = protocol.JOB_TYPES[command]
    job = protocol.job_from_dict(cls, GOOD[command])
    again = protocol.job_from_json(cls, job.to_json())
    assert again == job and again.to_dict() == json.loads(job.to_json())
    assert cls.command == command


@pytest.mark.parametrize("command, change, field", [
    ("train", {"steps": 0}, "steps"), ("train", {"device": "tpu"}, "device"),
    ("train", {"background": [1, 1]}, "background"), ("train", {"downscale": "2"}, "downscale"),
    ("train", {"eval_steps": [8]}, "eval_steps"), ("train", {"model": None}, "model"),
    ("sfm", {"images": "/p"}, "images"), ("sfm", {"max_size": 10}, "max_size"),
    ("sfm", {"matcher": "all"}, "matcher"), ("sfm", {"min_registered": 2}, "min_registered"),
    ("sfm", {"colour": True}, "colour"),
    ("render", {"frames": [{**FRAME, "K": [[1, 0], [0, 1]]}]}, "frames[0].K"),
    ("render", {"frames": [{**FRAME, "clip_end": 0.01}]}, "frames[0].clip_start"),
    ("render", {"frames": [{**FRAME, "object_matrices": []}]}, "frames[0].object_matrices"),
    ("render", {"objects": [{"name": "S"}]}, "objects[0].splats"),
    ("render", {"frames": [{**FRAME, "width": float("nan")}]}, "frames[0].width"),
    ("render", {"name": "a/b"}, "name"), ("render", {"device": "tpu"}, "device"),
    ("check", {"verbose": True}, "verbose"),
])
def test_the_validator_names_the_bad_field(command, change, field):
    with pytest.raises(protocol.JobError) as info:
        protocol.job_from_dict(protocol.JOB_TYPES[command], {**GOOD[command], **change})
    assert info.value.field == field and f"'{field}'" in info.value.message
    assert info.value.kind == "bad_job" and info.value.exit_code == protocol.EXIT_BAD_INPUT and info.value.hint


@pytest.mark.parametrize("command", sorted(protocol.JOB_TYPES))
def test_every_flag_is_a_job_field_and_flags_override_the_file(command, tmp_path):
    cls = protocol.JOB_TYPES[command]
    parser = job_parser(cls)
    flags = {a.dest for a in parser._actions if a.option_strings} - {"help", "job", "ipc"}
    if getattr(cls, "presets", None):  # --preset: named sets of the job's fields, not a field itself
        flags.remove("preset")
    assert flags == {f.name for f in dataclasses.fields(cls) if f.metadata.get("flag", True)}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(GOOD[command]))
    assert read_job(cls, [str(path)]) == read_job(cls, ["--job", str(path)]) == protocol.job_from_dict(
        cls, GOOD[command])
    if command == "train":
        job = read_job(cls, ["--job", str(path), "--steps", "9", "--background", "0,0,1", "--antialiased"])
        assert (job.steps, job.background, job.antialiased) == (9, [0.0, 0.0, 1.0], True)


def test_the_strategy_option_classes_match_gsplat():
    from gsplat.strategy import DefaultStrategy, MCMCStrategy

    for name, cls in (("default", DefaultStrategy), ("mcmc", MCMCStrategy)):
        ours = {f.name: f.default for f in dataclasses.fields(jobs.STRATEGY_OPTIONS[name])}
        theirs = {f.name: f.default for f in dataclasses.fields(cls) if f.name not in ("cap_max", "key_for_gradient")}
        assert ours == theirs, name


def _bridge(command: str, stdin: str, *args: str) -> tuple[int, list[protocol.Event]]:
    proc = subprocess.run([sys.executable, "-m", "bridge", command, *args], input=stdin, capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    return proc.returncode, [e for e in map(protocol.decode_event, proc.stdout.splitlines()) if e is not None]


@pytest.mark.parametrize("command, bad", [
    ("train", {**GOOD["train"], "steps": -1}), ("sfm", {"out": "/o"}),
    ("render", {**GOOD["render"], "frames": []}), ("check", {"nope": 1}),
])
def test_every_command_reads_its_job_on_stdin_and_a_bad_one_is_an_error_event_with_exit_code_2(command, bad):
    code, events = _bridge(command, json.dumps(bad) + "\n", "--job", "-", "--ipc")
    assert code == protocol.EXIT_BAD_INPUT, events
    assert isinstance(events[-1], protocol.Error) and events[-1].kind == "bad_job", events
    # Flags too: a bad value is the same kind of error, never argparse's usage on stderr and exit.
    flag = {"train": "--steps", "sfm": "--every", "render": "--device", "check": "--no-such"}[command]
    code, events = _bridge(command, "", flag, "x", "--ipc")
    assert code == protocol.EXIT_BAD_INPUT and events[-1].kind == "bad_job", events


def test_the_job_line_comes_first_and_commands_follow_on_stdin():
    code, events = _bridge("check", protocol.CheckJob().to_json() + "\n" + protocol.encode_command("stop"),
                           "--job", "-", "--ipc")
    assert code == 0 and isinstance(events[-1], protocol.Done), events
    assert "torch" in events[-1].metrics["packages"] and events[-1].metrics["python"]


# ---------------------------------------------------------------------------------------------
# Hostile numbers, nesting and sizes (issue: hostile inputs, round 3)


def _number_fields():
    """(command, job values, field path) of every number field of every job, nested ones included."""
    import typing

    out = []
    for command, cls in sorted(protocol.JOB_TYPES.items()):
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            base = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
            if base[0] in (int, float) or typing.get_origin(tp) is list and typing.get_args(tp)[0] in (int, float):
                out.append((command, f.name))
    out += [("render", "frames[0]." + name) for name in ("frame", "width", "height", "clip_start", "clip_end")]
    return out


def _with(command: str, field: str, value) -> dict:
    values = json.loads(json.dumps(GOOD[command]))
    if field.startswith("frames[0]."):
        values["frames"][0][field.split(".")[1]] = value
    else:
        values[field] = [value] if field in ("eval_steps", "background") else value
    return values


@pytest.mark.parametrize("command, field", _number_fields())
@pytest.mark.parametrize("value", [10**400, -(10**400), 2**64, 10**30], ids=["1e400", "-1e400", "2^64", "1e30"])
def test_every_number_field_refuses_numbers_beyond_its_range_naming_the_field(command, field, value):
    """An integer past the float range raised OverflowError inside validation; 10^30 splats or a seed
    past 2^32-1 passed and failed later as internal errors. Every number field has bounds (a camera's
    clip distances only that of a float: a far clip of 10^30 is a camera that clips nothing)."""
    if field.endswith("clip_end") and abs(value) < 1e308:
        return
    with pytest.raises(protocol.JobError) as info:
        protocol.job_from_dict(protocol.JOB_TYPES[command], _with(command, field, value))
    assert info.value.field == field and len(info.value.message) < 300 and info.value.exit_code == 2


@pytest.mark.parametrize("change", [
    {"seed": 2**32}, {"init_num_points": 10**12}, {"init_num_points": 10**30}, {"steps": 2**31},
    {"cap_max": 10**12}, {"strategy_options": {"refine_every": 10**400}},
    {"strategy_options": {"grow_grad2d": 10**400}},
], ids=["seed", "init 1e12", "init 1e30", "steps", "cap_max", "refine_every", "grow_grad2d"])
def test_integers_no_run_can_use_are_refused(change):
    with pytest.raises(protocol.JobError, match=str(next(iter(change)))):
        protocol.job_from_dict(protocol.TrainJob, {**GOOD["train"], **change})
    assert protocol.job_from_dict(protocol.TrainJob, {**GOOD["train"], "seed": 2**31 - 1}).seed == 2**31 - 1


def test_every_integer_field_has_both_bounds():
    import typing

    def fields(cls):
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            inner = args[0] if args else None
            if dataclasses.is_dataclass(inner):
                yield from fields(inner)
            elif tp is int or int in args:
                yield cls, f
    for cls in [*protocol.JOB_TYPES.values(), *jobs.STRATEGY_OPTIONS.values()]:
        for owner, f in fields(cls):
            if (owner.__name__, f.name) in (("RenderFrame", "width"), ("RenderFrame", "height")):
                continue  # RenderJob.check bounds the two together (a side and the pixel count)
            bounded = f.metadata["low"] is not None and f.metadata["high"] is not None
            assert bounded or f.metadata["choices"], (owner.__name__, f.name)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("text", [
    _deep(100_000), '{"strategy_options": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001,
    '{"model": ' + _deep(100_000) + "}",
], ids=["lists", "objects", "a field"])
def test_json_nested_too_deeply_is_a_bad_job_on_every_way_in(text, tmp_path):
    path = tmp_path / "job.json"
    path.write_text(text)
    for args, stdin in ((["--job", str(path)], ""), (["--job", "-"], text), (["--job", "-", "--ipc"], text + "\n")):
        proc = subprocess.run([sys.executable, "-m", "bridge", "train", *args], input=stdin, capture_output=True,
                              text=True, timeout=120, cwd=ROOT)
        events = [e for e in map(protocol.decode_event, proc.stdout.splitlines()) if e is not None]
        assert proc.returncode == 2 and events[-1].kind == "bad_job", (args, proc.stderr[-500:])
        assert "nested too deeply" in events[-1].message and "Traceback" not in proc.stderr
    code, events = _bridge("train", "", "--strategy-options", '{"a": ' * 10_000 + "1" + "}" * 10_000, "--ipc")
    assert code == 2 and events[-1].kind == "bad_job" and "expected JSON" in events[-1].message


def test_a_client_ignores_event_lines_nested_too_deeply():
    """A remote bridge's stdout reaches Blender: a hostile line is noise, not a RecursionError there."""
    assert protocol.decode_event('{"proto": "splatwork", "type": "log", "x": ' + _deep(100_000) + "}") is None
    assert protocol.decode_command(_deep(100_000)) is None


def test_an_error_echoing_a_huge_path_is_cut_to_a_readable_line(tmp_path):
    """A path of 10 MB in a job file: the error names the field, shows the path's start and end, and the
    whole event stays short. A job larger than MAX_JOB_BYTES is refused before it is parsed."""
    long = "/data/" + "a" * 10_000_000 + "/sparse/0"
    path = tmp_path / "job.json"
    path.write_text(json.dumps({**GOOD["train"], "model": long}))
    code, events = _bridge("train", "", "--job", str(path), "--ipc")
    assert code == 2 and events[-1].kind == "bad_job" and "'model'" in events[-1].message
    assert len(events[-1].message) < 500 and "/sparse/0" in events[-1].message, events[-1].message[:600]
    path.write_text(json.dumps({**GOOD["train"], "model": "/" + "b" * (protocol.MAX_JOB_BYTES + 10)}))
    code, events = _bridge("train", "", "--job", str(path), "--ipc")
    assert code == 2 and "larger than" in events[-1].message and len(events[-1].message) < 500
    # Any message is cut, whoever raises it: the start and the end (a file name) stay.
    error = protocol.BridgeError("bad_input", "/x/" + "c" * 10**6 + "/images/IMG_0001.JPG: not found")
    assert len(error.message) <= protocol.MESSAGE_LIMIT and error.message.endswith("IMG_0001.JPG: not found")


@pytest.mark.parametrize("change, field", [
    ({"model": "a\0b"}, "model"), ({"images": "\ud800"}, "images"), ({"out": "o" * 5000}, "out"),
    ({"x" * 100_000: 1}, "x" * 40),
], ids=["NUL", "surrogate", "5000 characters", "a long unknown field"])
def test_paths_no_file_system_takes_are_refused(change, field):
    with pytest.raises(protocol.JobError) as info:
        protocol.job_from_dict(protocol.TrainJob, {**GOOD["train"], **change})
    assert info.value.field.startswith(field) and len(info.value.message) < 400
