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
