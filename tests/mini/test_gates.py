"""The premise gates: known answers of each rule, the low-pass transform, and classify_folder's per-class counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sda.mini import gates as G
from sda.mini.benchmarks import Gates
from sda.mini.data import lowpass_folder, lowpass_uint8

g = Gates()


def test_gate_a_needs_every_class():
    ok = G.gate_a({"top1": 90.0, "per_class": {0: 100.0, 1: 80.0}}, g)
    assert ok["pass"] and ok["min_class"] == 80.0
    assert not G.gate_a({"top1": 95.0, "per_class": {0: 100.0, 1: 79.9}}, g)["pass"]


def test_gate_b_uses_noise_blur_and_pixelate_means():
    assert len(G.GATE_B_CORRUPTIONS) == 8 and "pixelate" in G.GATE_B_CORRUPTIONS and "fog" not in G.GATE_B_CORRUPTIONS
    source = {c: 50.0 for c in G.GATE_B_CORRUPTIONS} | {"fog": 0.0}
    projected = dict(source, gaussian_noise=90.0, defocus_blur=20.0, fog=100.0)  # +40 and -30 -> mean +1.25
    b = G.gate_b(source, projected)
    assert b["pass"] and b["mean"]["projected"] == pytest.approx(51.25) and "fog" not in b["corruptions"]
    assert not G.gate_b(source, dict(projected, gaussian_noise=70.0))["pass"]  # +20 - 30 < 0


def test_gates_c_and_d():
    c, d = G.gate_c_d(clean=96.0, projected=86.0, oracle_projected=92.0, g=g)
    assert c["pass"] and c["gap"] == 10.0 and d["pass"] and d["recovered"] == pytest.approx(0.6)
    c, d = G.gate_c_d(clean=96.0, projected=92.0, oracle_projected=96.0, g=g)
    assert not c["pass"] and d["pass"]  # gap 4 < 5; the oracle recovers all of it
    c, d = G.gate_c_d(clean=96.0, projected=86.0, oracle_projected=90.0, g=g)
    assert not d["pass"]  # 40%
    c, d = G.gate_c_d(clean=96.0, projected=97.0, oracle_projected=99.0, g=g)
    assert not c["pass"] and not d["pass"] and d["recovered"] == 0.0  # nothing to recover


def test_gate_e_and_premise():
    assert G.gate_e(90.0, 81.0, g)["pass"] and not G.gate_e(90.0, 80.9, g)["pass"]
    gates = {k: {"pass": True} for k in "abcde"}
    assert G.premise(gates)
    gates["a"]["pass"] = gates["b"]["pass"] = False
    assert G.premise(gates)  # (a) and (b) are quality gates, not the premise
    gates["d"]["pass"] = False
    assert not G.premise(gates)


def test_lowpass_uint8_is_the_projection_filter_rounded():
    from sda.align.lowpass import lowpass_resize_right

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8))
    y = lowpass_uint8(x, 2)
    ref = lowpass_resize_right(x.double() / 255.0, 2)
    assert y.dtype == torch.uint8 and (y.double() / 255.0 - ref.clamp(0, 1)).abs().max() <= 0.5 / 255 + 1e-6
    flat = torch.full((1, 3, 32, 32), 77, dtype=torch.uint8)
    inner = (slice(None), slice(None), slice(10, -10), slice(10, -10))
    assert torch.equal(lowpass_uint8(flat, 4)[inner], flat[inner])  # a constant image is in the band (inside:
    assert lowpass_uint8(flat, 4)[0, 0, 0, 0] < 77  # resize-right pads with zeros, as in the reference's guidance)
    assert (lowpass_uint8(x, 4).double() - x.double()).abs().mean() > 20  # noise is not


def test_lowpass_folder_and_classify_folder_transform(tmp_path):
    rng = np.random.default_rng(1)
    for c in range(2):
        for i in range(3):
            p = tmp_path / "src" / f"{c:04d}" / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(p)
    lowpass_folder(tmp_path / "src", tmp_path / "lp", 2)
    a = np.asarray(Image.open(tmp_path / "lp" / "0001" / "2.png"))
    b = lowpass_uint8(
        torch.from_numpy(np.array(Image.open(tmp_path / "src" / "0001" / "2.png"))).permute(2, 0, 1)[None], 2
    )
    assert np.array_equal(a, b[0].permute(1, 2, 0).numpy())

    class Bright(torch.nn.Module):  # class 1 iff the mean pixel is above 127.5 (through the normaliser)
        data_preprocessor = None

        def forward(self, x, mode="tensor"):
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([-m, m], 1)

    from sda.finetune import classifiers

    seen = []

    def fake_logits(model, images):
        seen.append(images.dtype)
        m = images.double().mean(dim=(1, 2, 3)) - 127.5
        return torch.stack([-m, m], 1)

    orig = classifiers.classifier_logits
    classifiers.classifier_logits = fake_logits
    try:
        white = G.classify_folder(Bright(), tmp_path / "src", transform=lambda x: torch.full_like(x, 255))
        black = G.classify_folder(Bright(), tmp_path / "src", transform=lambda x: torch.zeros_like(x))
    finally:
        classifiers.classifier_logits = orig
    assert white["per_class"] == {0: 0.0, 1: 100.0} and white["top1"] == 50.0 and white["n"] == 6
    assert black["per_class"] == {0: 100.0, 1: 0.0} and seen[0] == torch.uint8
