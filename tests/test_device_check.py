"""benchmarks/device_check.py --smoke: every section of the GPU check runs on a CPU with tiny models, so
the prepared check cannot rot between the rare GPU loans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_device_check_smoke(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    env = {**os.environ, "SDA_NO_PROGRESS": "1", "PYTHONWARNINGS": "ignore"}
    r = subprocess.run(
        [sys.executable, "benchmarks/device_check.py", "--smoke", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert report["mode"] == "smoke" and report["machine"]["torch"]
    assert not [x for x in rows if x.get("error")], [x for x in rows if x.get("error")]
    proj = [x for x in rows if x.get("section") == "projection" and "images_per_s_full_N50" in x]
    assert proj[0]["name"].startswith("baseline") and {"fp16", "bf16"} <= {x["name"].split()[0] for x in proj}
    assert all("max_pixel_dev_vs_fp32" in x for x in proj[1:])
    assert len([x for x in rows if x.get("section") == "dit"]) == 3
    assert len([x for x in rows if x.get("section") == "finetune" and x.get("loss_finite")]) == 5
    assert len([x for x in rows if x.get("section") == "eval" and x.get("finite")]) == 5
    torchrun = [x for x in rows if x.get("section") == "torchrun"]
    assert len(torchrun) == 3 and all(x["exactly_once"] and x["rc"] == 0 for x in torchrun)
    assert "| projection | baseline fp32" in r.stdout
