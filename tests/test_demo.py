"""The README's main job, run as a user runs it: a real subprocess writing out/demo.blend, renders, report.md."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_demo_writes_blend_renders_and_a_report_with_held_out_psnr(tmp_path):
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
