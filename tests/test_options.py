"""Training, SfM and render options are defined once, as job fields: the Blender properties, the panel
and the headless command's flags are made from them (addon/common/options.py, bridge/protocol/flags.py)."""
from __future__ import annotations

import dataclasses

import bpy
import pytest


def _field(cls, name):
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def test_every_option_the_panel_shows_is_a_property_made_from_its_field(blender_with_splatwork, splatwork):
    jobs = splatwork.bridge.protocol.jobs
    props = bpy.context.scene.splatwork_training.bl_rna.properties
    standard = jobs.TRAIN_PRESETS["standard"].fields
    shown = jobs.panel_fields(jobs.TrainJob)
    assert {"steps", "downscale", "sh_degree", "snapshot_every", "background", "device", "packed"} <= set(shown)
    for name in shown:
        f, prop = _field(jobs.TrainJob, name), props[name]
        assert prop.name == f.metadata["label"] and prop.description.lower() == f.metadata["help"].lower(), name
        default = standard.get(name, f.default if f.default is not dataclasses.MISSING else f.default_factory())
        got = list(prop.default_array) if getattr(prop, "is_array", False) else prop.default
        assert got == pytest.approx(default) if not isinstance(default, str) else got == default, name
        if f.metadata.get("low") is not None and prop.type in ("INT", "FLOAT"):
            assert prop.hard_min == pytest.approx(f.metadata["low"]), name
        if f.metadata.get("high") is not None and prop.type in ("INT", "FLOAT"):
            assert prop.hard_max == pytest.approx(f.metadata["high"]), name
        if f.metadata.get("choices"):
            assert tuple(i.identifier for i in prop.enum_items) == f.metadata["choices"], name


def test_sfm_options_come_from_the_sfm_job(blender_with_splatwork, splatwork):
    jobs = splatwork.bridge.protocol.jobs
    props = bpy.context.scene.splatwork_reconstruct.bl_rna.properties
    for name in jobs.panel_fields(jobs.SfmJob):
        f = _field(jobs.SfmJob, name)
        assert props[name].name == f.metadata["label"], name
        if f.metadata.get("choices"):
            assert tuple(i.identifier for i in props[name].enum_items) == f.metadata["choices"], name
            assert [i.name for i in props[name].enum_items] == [f.metadata["choice_text"][c][0]
                                                                 for c in f.metadata["choices"]]


def test_packed_reaches_the_job_from_the_advanced_panel_and_from_the_headless_flag(blender_with_splatwork, splatwork,
                                                                                   tmp_path):
    """An option added to the job only (here ``packed``) is a property, a row in Advanced and a flag."""
    run, cli = splatwork.addon.training.run, splatwork.addon.headless.cli
    settings = bpy.context.scene.splatwork_training
    paths = {"model": str(tmp_path), "images": str(tmp_path), "out": str(tmp_path / "out")}
    assert run.train_job(settings, **paths).packed is False
    settings.packed = True
    assert run.train_job(settings, **paths).packed is True
    advanced = splatwork.addon.training.panel.VIEW3D_PT_splatwork_training_advanced
    assert advanced.bl_parent_id == "VIEW3D_PT_splatwork_training"
    assert "packed" in splatwork.bridge.protocol.jobs.panel_fields(splatwork.bridge.protocol.TrainJob, "advanced")
    args = cli.build_parser().parse_args(["--model", "m", "--out", "o", "--packed", "--steps", "7"])
    assert cli.training_options(args) == {"steps": 7, "packed": True}
    args = cli.build_parser().parse_args(["--model", "m", "--out", "o", "--packed", "false"])
    assert cli.training_options(args) == {"packed": False}


@pytest.mark.parametrize("flags, said", [
    (["--steps", "0"], "--steps: must be at least 1, got 0"),
    (["--downscale", "0"], "--downscale: must be between 1 and 64, got 0.0"),
    (["--downscale", "inf"], "--downscale: must be a number, got inf"),
    (["--background", "1,0"], "--background: must be three numbers"),
    (["--background", "1,2,0"], "--background: must be between 0 and 1, got 2.0"),
    (["--sh-degree", "4"], "--sh-degree: must be between 0 and 3, got 4"),
])
def test_a_bad_training_flag_is_refused_before_any_work(blender_with_splatwork, splatwork, tmp_path, capsys, flags,
                                                        said):
    code = splatwork.addon.headless.cli.main(["--model", str(tmp_path / "none"), "--out", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and said in err, err
    assert not (tmp_path / "o").exists()


def test_presets_are_the_bridges_and_editing_a_value_leaves_the_preset(blender_with_splatwork, splatwork):
    presets = splatwork.bridge.protocol.TRAIN_PRESETS
    settings = bpy.context.scene.splatwork_training
    settings.preset = "FAST"
    assert (settings.steps, settings.downscale, settings.sh_degree) == (
        presets["fast"].fields["steps"], presets["fast"].fields["downscale"], presets["fast"].fields["sh_degree"])
    assert settings.speedups == "FAST"
    settings.device = "cpu"  # not a preset's: the preset stays
    assert settings.preset == "FAST"
    settings.steps = 1234
    assert settings.preset == "CUSTOM" and settings.speedups == "FAST"
