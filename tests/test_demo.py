"""The README's main job, run as a user runs it: a real subprocess writing out/demo.blend, renders, report.md."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_demo_writes_blend_renders_and_a_report_with_held_out_psnr(blender_with_splatwork, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py"), "--out", str(out), "--steps", "2", "--views", "8",
         "--resolution", "48x36", "--samples", "2"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "demo.blend").stat().st_size > 0 and (out / "preview.png").is_file()
    renders = sorted(out.glob("render_view_*.png"))
    assert renders, "every held-out view is rendered"
    report = (out / "report.md").read_text()
    assert "trainer PSNR" in report and "Failed" not in report
    cycles_psnr = [float(x) for x in re.findall(r"\| ([\d.]+) \|\n", report)]
    assert len(cycles_psnr) == len(renders) and all(p > 10 for p in cycles_psnr)
    assert not list(out.glob(".tmp-*")), "renders are written atomically"
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "preview.png").stat().st_mode & 0o777 == 0o666 & ~umask, "an ordinary file, not mkstemp's 0600"

    # The saved file holds the cameras and the trained splats with the preview modifier.
    blender_with_splatwork.ops.wm.open_mainfile(filepath=str(out / "demo.blend"))
    splats = [o for o in blender_with_splatwork.data.objects if o.name.endswith(" Splats")]
    assert len(splats) == 1 and splats[0].type == "POINTCLOUD" and len(splats[0].data.points) > 0
    assert any(m.type == "NODES" and m.node_group for m in splats[0].modifiers)
    assert sum(o.type == "CAMERA" for o in blender_with_splatwork.data.objects) >= 8
    assert blender_with_splatwork.context.scene.splatwork_training.state == "completed"
