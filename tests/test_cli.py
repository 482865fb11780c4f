"""`blender --command splatwork`: arguments, exit codes and errors, called as the function Blender registers.

The whole pipeline through this command runs in tests/test_demo.py (the demo is its main user)."""
from __future__ import annotations


def test_help_and_bad_arguments_answer_with_exit_codes(blender_with_splatwork, splatwork, capsys):
    cli = splatwork.addon.headless.cli
    assert cli.main(["--help"]) == 0
    assert "--model" in capsys.readouterr().out
    assert cli.main([]) == 2
    assert "required" in capsys.readouterr().err
    assert cli.main(["--model", "m", "--out", "o", "--steps", "many"]) == 2


def test_a_missing_model_is_a_clean_bad_input_error(blender_with_splatwork, splatwork, tmp_path, capsys):
    code = splatwork.addon.headless.cli.main(["--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "nowhere" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists(), "nothing is written for bad input"


def test_check_says_what_the_training_environment_has(blender_with_splatwork, splatwork, capsys):
    """`blender --command splatwork --check [--json]`: the bridge Python's check. The text and the exit code say
    what the check found (--json), on a machine with or without an NVIDIA GPU."""
    import json

    cli = splatwork.addon.headless.cli
    json_code = cli.main(["--check", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["packages"]["torch"].startswith("2.13.0")
    code = cli.main(["--check"])
    out = capsys.readouterr().out
    assert code == json_code
    assert "torch 2.13.0" in out
    if info["gpu"]:  # nvidia-smi answered
        assert f"GPU {info['gpu']['name']}: driver {info['gpu']['driver']}" in out and "No NVIDIA GPU" not in out
    else:
        assert "No NVIDIA GPU found" in out
    if info["cuda"]:
        assert "CUDA works" in out and info["kernels"]["state"] in ("loaded", "buildable", "unbuildable")
    else:
        assert "CUDA works" not in out and info["kernels"]["state"] == "no_cuda"
    # Exit 1 exactly when a line is marked wrong ("!!"); torch without CUDA (this suite's environment) is not wrong.
    errors = [line for line in out.splitlines() if line.startswith("!! ")]
    assert code == (1 if errors else 0), out
    if not info["cuda"] and info.get("driver_fits") is not False:
        assert code == 0 and not errors, out


# ---------------------------------------------------------------------------------------------
# Every argument checked before any work (issue: hostile inputs, round 3)

import pytest  # noqa: E402


def _argv(scene, tmp_path, *extra):
    return ["--model", str(scene / "sparse" / "0"), "--out", str(tmp_path / "out"), "--steps", "1",
            "--device", "cpu", *extra]


@pytest.mark.parametrize("extra, said", [
    (["--steps", "0"], "--steps: must be between 1 and"), (["--steps", str(2**31)], "--steps: must be between"),
    (["--steps", "1" + "0" * 30], "--steps: must be between"), (["--downscale", "0"], "--downscale: must be between"),
    (["--downscale", "inf"], "--downscale: must be a finite number"),
    (["--downscale", "nan"], "--downscale: must be a finite number, got nan"),
    (["--samples", "-1", "--render", "{tmp}/p.png"], "--samples: must be between 1 and 16,777,216, got -1"),
    (["--samples", "0", "--render", "{tmp}/p.png"], "--samples: must be between 1"),
    (["--samples", "99999999999", "--render", "{tmp}/p.png"], "--samples: must be between 1"),
    (["--camera", "nope.png", "--render", "{tmp}/p.png"], "--camera: the model"),
    (["--camera", "view_000.png"], "--camera: chooses the camera of the preview render; give --render too"),
    (["--images", "{tmp}/no-such-folder"], "--images:"), (["--machine", "nowhere"], "--machine: no remote machine"),
    (["--blend", "{tmp}"], "--blend:"), (["--out", "{tmp}/file.txt/sub"], "--out:"),
], ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else None)
def test_every_argument_is_checked_before_any_work(blender_with_splatwork, splatwork, synthetic_scene, tmp_path,
                                                   capsys, extra, said):
    """--steps 0, --downscale 0 or inf and --samples -1 were clamped by Blender's properties and exited 0;
    --steps 2^31 raised a bpy ValueError; --samples 99999999999 and an unknown --camera were found only
    after training (exit 1). Each is now refused at once, with exit code 2 and one line naming it."""
    import bpy

    (tmp_path / "file.txt").write_text("a file")
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    before = len(bpy.data.objects)
    code = splatwork.addon.headless.cli.main(_argv(synthetic_scene, tmp_path, *extra))
    err = capsys.readouterr().err
    assert code == 2 and said in err and "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("splatwork: error:")] == [
        next(line for line in err.splitlines() if said in line)]
    assert len(bpy.data.objects) == before, "nothing imported"
    assert not (tmp_path / "out").exists() and not (tmp_path / "p.png").exists()


def test_blend_and_render_into_an_unwritable_folder_are_refused_before_any_work(blender_with_splatwork, splatwork,
                                                                                synthetic_scene, tmp_path, capsys):
    """--blend into an unwritable folder raised a RuntimeError traceback after the whole run."""
    from conftest import unwritable_folder

    with unwritable_folder(tmp_path / "locked") as locked:
        for flag, path in (("--blend", locked / "scene.blend"), ("--blend", locked / "new" / "scene.blend"),
                           ("--render", locked / "p.png"), ("--out", locked / "run")):
            code = splatwork.addon.headless.cli.main(["--model", str(synthetic_scene / "sparse" / "0"), "--out",
                                                      str(tmp_path / "out"), "--steps", "1", flag, str(path)]
                                                     if flag != "--out" else
                                                     ["--model", str(synthetic_scene / "sparse" / "0"), flag,
                                                      str(path)])
            err = capsys.readouterr().err
            assert code == 2 and f"{flag}: cannot write in {locked}" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
