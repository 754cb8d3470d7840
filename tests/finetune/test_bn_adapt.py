"""BN-adapt re-estimates BatchNorm statistics exactly and touches nothing else."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sda.finetune.bn_adapt import adapt_bn_statistics
from sda.finetune.classifiers import build_classifier_from_config
from sda.utils.checkpoint import safe_load

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "finetune" / "TinyResNet.py"


def test_running_stats_equal_batch_average():
    torch.manual_seed(0)
    model = build_classifier_from_config(TINY)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    first = bns[0]
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    batches = [torch.randn(4, 3, 32, 32) * 2 + 1, torch.randn(4, 3, 32, 32)]
    seen_inputs = []
    handle = first.register_forward_hook(lambda m, inp, out: seen_inputs.append(inp[0].detach()))
    assert adapt_bn_statistics(model, iter(batches)) == 8
    handle.remove()
    want_mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in seen_inputs]).mean(0)
    want_var = torch.stack([x.var(dim=(0, 2, 3), unbiased=True) for x in seen_inputs]).mean(0)
    torch.testing.assert_close(first.running_mean, want_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(first.running_var, want_var, rtol=1e-5, atol=1e-6)
    assert not model.training and all(not m.training and m.momentum == 0.1 for m in bns)
    for k, v in model.state_dict().items():
        if k in weights:
            assert torch.equal(v, weights[k]), k


def test_cli_writes_loadable_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_classifier_from_config(TINY)
    torch.save({"meta": {}, "state_dict": model.state_dict()}, tmp_path / "src.pth")
    rng = np.random.default_rng(0)
    for c in range(2):
        for i in range(3):
            d = tmp_path / "syn" / f"{c:04d}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / f"{i:06d}.png")
    cfg = TINY  # the mini benchmark's classifier config; it carries the test pipeline
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "finetune" / "bn_adapt.py"),
            str(cfg),
            str(tmp_path / "src.pth"),
            "--data-root",
            str(tmp_path / "syn"),
            "--out",
            str(tmp_path / "bn.pth"),
            "--batch-size",
            "4",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    ck = safe_load(tmp_path / "bn.pth")
    assert ck["meta"]["bn_adapt"]["images"] == 6
    before = model.state_dict()
    changed = [k for k in before if "running_mean" in k and not torch.equal(before[k], ck["state_dict"][k])]
    assert changed, "BN statistics did not change"
    adapted = build_classifier_from_config(TINY, tmp_path / "bn.pth")
    assert adapted is not None
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "finetune" / "bn_adapt.py"),
            str(cfg),
            str(tmp_path / "src.pth"),
            "--data-root",
            str(tmp_path / "nothing"),
            "--out",
            str(tmp_path / "x.pth"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "error:" in r.stderr and not (tmp_path / "x.pth").exists()
