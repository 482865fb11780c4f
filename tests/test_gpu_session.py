"""benchmarks/gpu_session.sh, the one prepared device call, runs end to end on the CPU (DRY=1) before a
GPU session spends device time on it: every stage writes its results and the packed run matches."""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from conftest import BRIDGE_PYTHON, ROOT

STATUE = ROOT.parent / "shared" / "data" / "colmap" / "statue_of_liberty"


@pytest.mark.slow
def test_the_gpu_session_script_runs_dry_on_the_cpu(tmp_path):
    if not (STATUE / "sparse" / "0").is_dir():
        pytest.skip(f"{STATUE} is absent (../shared/data is not part of a fresh clone)")
    out = tmp_path / "out"
    env = {**os.environ, "DRY": "1", "PY": BRIDGE_PYTHON, "OUT": str(out), "BUDGET": "240", "DATA": str(STATUE)}
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(r"\[\d+s\] done", (out / "env.txt").read_text())
    parity = json.loads((out / "raster.json").read_text())  # on the CPU the script checks itself
    assert parity["device"] == "cpu" and parity["classic"]["culling_agreement"] == 1.0
    assert parity["warp"]["classic"]["culling_agreement"] == 1.0  # the compiled backend against torch
    timings = json.loads((out / "raster.log").read_text().split("exit ")[-2].strip().splitlines()[-1])
    assert [r["backend"] for r in timings["rows"]] == ["torch", "warp", "gsplat"]
    packed = (out / "packed.txt").read_text()
    assert packed.count("exit 0") == 2, packed
    metrics = [json.loads(m) for m in re.findall(r"^\{\n.*?^\}", packed, flags=re.S | re.M)]
    assert len(metrics) == 2 and metrics[0]["num_splats"] == metrics[1]["num_splats"]
    assert metrics[0]["psnr"] == pytest.approx(metrics[1]["psnr"], abs=0.01)
    summary = (out / "train" / "summary.md").read_text()
    assert "| ours_va |" in summary and "| ours_warp |" in summary and "failed" not in summary
    assert (out / "logs.tgz").is_file()
