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
