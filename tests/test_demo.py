"""The README's main job, run as a user runs it: a real subprocess writing out/demo.blend, renders, report.md."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, compat

# The demo's held-out PSNR as BENCHMARKS.md measured it ("The demo, as it now runs": 23.69 dB, seed 0, 192x144,
# Fast Preview, 400 steps on the CPU). The run is seeded, so what moves it is the machine's arithmetic (thread
# counts, CPU kernels); between seeds the held-out PSNR moves by 0.25-0.5 dB (BENCHMARKS.md, the CPU study), so
# 1 dB below is a regression, not noise.
DEMO_HELD_OUT_PSNR = 23.69
SEED_MARGIN_DB = 1.0
# Blender's render of the imported splats against the trainer's own rasterizer, view by view, Cycles at 8 samples.
# The quad preview (5.0-5.2) blends the splats' layers in linear light, the trainer in sRGB, so soft edges come out
# brighter (BENCHMARKS.md, Fidelity of the preview): measured 2.7-2.9 dB below the trainer on this scene (the same
# at 32 samples). Blender's native splats (5.3) differ more from the trainer (BENCHMARKS.md: 25.5-27.4 dB against
# the reference on the plush dog, where the quads reach 28.4): measured 3.1-4.4 dB below, at 8 and at 32 samples
# alike. A flat image of the photo's mean colour scores about 15 dB, so these bounds fail a render that lost the
# splats, their transform or their colours.
CYCLES_BELOW_TRAINER_DB = 5.0 if compat.NATIVE_SPLATS else 4.0
CYCLES_SAMPLES = 8


@pytest.mark.slow
@pytest.mark.ends_only
def test_demo_writes_blend_renders_and_a_report_with_held_out_psnr(blender_with_splatwork, tmp_path):
    """The demo as a user runs it (default scene, steps and resolution; fewer Cycles samples, to save time)."""
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py"), "--out", str(out), "--samples", str(CYCLES_SAMPLES)],
        capture_output=True, text=True, timeout=1800, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "demo.blend").stat().st_size > 0 and (out / "preview.png").is_file()
    renders = sorted(out.glob("render_view_*.png"))
    assert len(renders) == 3, "every held-out view (every 8th of 24) is rendered"
    report = (out / "report.md").read_text()
    print(report)  # the figures, for `pytest -s`
    assert "Failed" not in report
    trainer = float(re.search(r"trainer PSNR ([\d.]+) dB", report).group(1))
    rows = re.findall(r"\| (view_\d+\.png) \| ([\d.]+) \| [\d.]+ \| `(render_view_\d+\.png)` \| ([\d.]+) \|\n", report)
    assert [r[2] for r in rows] == [p.name for p in renders], report
    assert trainer >= DEMO_HELD_OUT_PSNR - SEED_MARGIN_DB, report
    for view, view_psnr, _render, cycles_psnr in rows:
        assert float(cycles_psnr) >= float(view_psnr) - CYCLES_BELOW_TRAINER_DB, (view, report)
    assert not list(out.glob(".tmp-*")), "renders are written atomically"
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "preview.png").stat().st_mode & 0o777 == 0o666 & ~umask, "an ordinary file, not mkstemp's 0600"

    # The saved file holds the cameras and the trained splats with the preview modifier.
    blender_with_splatwork.ops.wm.open_mainfile(filepath=str(out / "demo.blend"))
    splats = [o for o in blender_with_splatwork.data.objects if o.name.endswith(" Splats")]
    assert len(splats) == 1 and splats[0].type == "POINTCLOUD" and len(splats[0].data.points) > 0
    assert any(m.type == "NODES" and m.node_group for m in splats[0].modifiers)
    assert sum(o.type == "CAMERA" for o in blender_with_splatwork.data.objects) >= 24  # one per photo
    assert blender_with_splatwork.context.scene.splatwork_training.state == "completed"
