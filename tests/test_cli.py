"""`blender --command splatwork`: the headless pipeline, called as the function Blender registers."""
from __future__ import annotations

import bpy
import numpy as np
from PIL import Image


def test_help_and_bad_arguments_answer_with_exit_codes(blender_with_splatwork, splatwork, capsys):
    cli = splatwork.addon.cli
    assert cli.main(["--help"]) == 0
    assert "--model" in capsys.readouterr().out
    assert cli.main([]) == 2
    assert "required" in capsys.readouterr().err
    assert cli.main(["--model", "m", "--out", "o", "--steps", "many"]) == 2


def test_a_missing_model_is_a_clean_bad_input_error(blender_with_splatwork, splatwork, tmp_path, capsys):
    code = splatwork.addon.cli.main(["--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "nowhere" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists(), "nothing is written for bad input"


def test_the_whole_pipeline_headless(blender_with_splatwork, splatwork, synthetic_scene, tmp_path):
    blend, png = tmp_path / "result.blend", tmp_path / "preview.png"
    code = splatwork.addon.cli.main([
        "--model", str(synthetic_scene / "sparse" / "0"), "--images", str(synthetic_scene / "images"),
        "--out", str(tmp_path / "train"), "--preset", "fast", "--steps", "2", "--downscale", "4",
        "--sh-degree", "0", "--device", "cpu", "--blend", str(blend), "--render", str(png),
        "--camera", "view_000.png", "--samples", "4",
    ])
    assert code == 0
    assert (tmp_path / "train" / "splats.ply").is_file()
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape == (72, 96, 3) and pixels.std() > 5, "a real render of something"
    assert not list(tmp_path.glob(".tmp-*")), "the PNG was written atomically"

    bpy.ops.wm.open_mainfile(filepath=str(blend))
    splats = [o for o in bpy.data.objects if splatwork.addon.splats.pointcloud.is_splat_object(o)]
    assert len(splats) == 1 and any(m.type == "NODES" for m in splats[0].modifiers)
    assert bpy.context.scene.splatwork_training.state == "completed"
