"""The premise gates of a mini benchmark: does the data give SDA something to fix? All on validation data.

SDA's gain needs (i) corruptions the projection removes, (ii) the class surviving in the band the guidance
keeps and (iii) a classifier relying on detail above that band, which the diffusion model re-draws, so that
projected images lose accuracy that fine-tuning can win back. The gates measure each:

(a) the source classifier on the generator's raw samples, every class >= ``a_min_class`` (the labels hold);
(b) projection raises the source on the noise, blur and pixelate corruptions (their mean);
(c) misalignment: the source on projected clean images is >= ``c_min_gap`` points below clean;
(d) fixable: the oracle (the source fine-tuned on projected *real* train images) recovers >= half of (c)'s gap;
(e) the class survives in the band: a classifier trained on low-passed images reaches >= 0.9 x clean.

The demo measures them on every run from its own outputs; ``mini/train_sources.py`` once, on more images,
for the manifest. Both call the functions below.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sda.mini.benchmarks import Gates
from sda.utils.io import list_images, load_rgb
from sda.utils.layout import CORRUPTIONS

BATCH = 128
GATE_B_CORRUPTIONS = (*CORRUPTIONS[:7], "pixelate")  # noise (3), blur (4), pixelate
Transform = Callable[[torch.Tensor], torch.Tensor]  # uint8 (B, 3, H, W) -> uint8 (B, 3, H, W)


def load_source_classifier(config: str | Path, checkpoint: str | Path) -> nn.Module:
    """A classifier (eval mode, CPU) from its config and weights."""
    from sda.finetune.classifiers import build_classifier_from_config

    return build_classifier_from_config(str(config), checkpoint)


def classify_folder(model: nn.Module, root: Path, transform: Transform | None = None) -> dict[str, Any]:
    """Top-1 (%) of ``model`` on a class-folder set ``root/<class:04d>/<image>``, overall and per class.

    ``transform`` maps each uint8 batch before the model sees it (e.g. DDA's low-pass filter).
    """
    from sda.finetune.classifiers import classifier_logits

    files = list_images(root)
    labels = np.array([int(Path(f).parts[0]) for f in files])
    preds = []
    with torch.no_grad():
        for i in range(0, len(files), BATCH):
            x = np.stack([np.asarray(load_rgb(root / f)) for f in files[i : i + BATCH]])  # (B, H, W, 3)
            x = torch.from_numpy(x).permute(0, 3, 1, 2)  # (B, 3, H, W) uint8
            if transform is not None:
                x = transform(x)
            preds.append(classifier_logits(model, x).argmax(1).numpy())
    correct = np.concatenate(preds) == labels
    per_class = {int(c): 100.0 * float(correct[labels == c].mean()) for c in np.unique(labels)}
    return {"top1": 100.0 * float(correct.mean()), "per_class": per_class, "n": int(len(files))}


def mean_of(table: dict[str, float], names: tuple[str, ...]) -> float:
    """The mean of ``table``'s entries ``names`` (e.g. the noise corruptions of a top-1 table)."""
    return sum(table[n] for n in names) / len(names)


def gate_a(synthetic: dict[str, Any], g: Gates) -> dict[str, Any]:
    """(a) from :func:`classify_folder` of the raw generator samples."""
    worst = min(synthetic["per_class"].values())
    return {
        "top1": synthetic["top1"],
        "per_class": synthetic["per_class"],
        "min_class": worst,
        "pass": bool(worst >= g.a_min_class),
    }


def gate_b(source: dict[str, float], projected: dict[str, float]) -> dict[str, Any]:
    """(b) from per-corruption top-1 tables of the source on raw and on projected corrupted val images."""
    per = {c: {"source": source[c], "projected": projected[c]} for c in GATE_B_CORRUPTIONS}
    mean = {"source": mean_of(source, GATE_B_CORRUPTIONS), "projected": mean_of(projected, GATE_B_CORRUPTIONS)}
    return {"corruptions": per, "mean": mean, "pass": bool(mean["projected"] > mean["source"])}


def gate_c_d(clean: float, projected: float, oracle_projected: float, g: Gates) -> tuple[dict, dict]:
    """(c) and (d) from the top-1 of the source on clean and projected clean val and of the oracle on the latter."""
    gap = clean - projected
    recovered = (oracle_projected - projected) / gap if gap > 0 else 0.0
    c = {"clean": clean, "projected": projected, "gap": gap, "pass": bool(gap >= g.c_min_gap)}
    d = {
        "oracle_projected": oracle_projected,
        "recovered": recovered,
        "pass": bool(gap > 0 and recovered >= g.d_min_recovered),
    }
    return c, d


def gate_models(config: str | Path, assets: Path) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The source classifier, the oracle of gate (d) and the low-pass classifier of gate (e) in ``assets``."""
    return tuple(
        load_source_classifier(config, assets / name)
        for name in ("classifier.pth", "oracle.pth", "classifier_lowpass.pth")
    )


def gates_c_d_e(
    models: tuple[nn.Module, nn.Module, nn.Module], clean: Path, projected_clean: Path, val: Path, D: int, g: Gates
) -> dict[str, dict[str, Any]]:
    """(c)-(e) from :func:`gate_models`, clean val images and their projections (same names), and the val split."""
    from sda.mini.data import lowpass_uint8

    source, oracle, lowpass_clf = models
    c, d = gate_c_d(
        classify_folder(source, clean)["top1"],
        classify_folder(source, projected_clean)["top1"],
        classify_folder(oracle, projected_clean)["top1"],
        g,
    )
    lowpassed = classify_folder(lowpass_clf, val, transform=lambda x: lowpass_uint8(x, D))["top1"]
    return {"c": c, "d": d, "e": gate_e(classify_folder(source, val)["top1"], lowpassed, g)}


def gate_e(clean: float, lowpass_classifier: float, g: Gates) -> dict[str, Any]:
    """(e) from the source on clean val and the low-pass classifier on low-passed val."""
    ratio = lowpass_classifier / clean if clean > 0 else 0.0
    return {
        "clean": clean,
        "lowpass_classifier": lowpass_classifier,
        "ratio": ratio,
        "pass": bool(ratio >= g.e_min_ratio),
    }


def premise(gates: dict[str, Any]) -> bool:
    """SDA's premise at this scale: gates (c), (d) and (e) pass."""
    return all(gates[k]["pass"] for k in ("c", "d", "e"))


def gate_line(gates: dict[str, Any]) -> str:
    """One line per gate, for the console and the README."""

    def ok(k: str) -> str:
        return "PASS" if gates[k]["pass"] else "FAIL"

    a, b, c, d, e = (gates[k] for k in "abcde")
    return "\n".join(
        [
            f"(a) source on raw synthetic samples {a['top1']:.1f}%, worst class {a['min_class']:.0f}% [{ok('a')}]",
            f"(b) noise/blur/pixelate val {b['mean']['source']:.1f}% -> projected {b['mean']['projected']:.1f}% "
            f"[{ok('b')}]",
            f"(c) clean val {c['clean']:.1f}% -> projected {c['projected']:.1f}% (gap {c['gap']:.1f}) [{ok('c')}]",
            f"(d) oracle on projected clean val {d['oracle_projected']:.1f}% (recovers {100 * d['recovered']:.0f}% "
            f"of the gap) [{ok('d')}]",
            f"(e) low-pass classifier on low-passed val {e['lowpass_classifier']:.1f}% = {e['ratio']:.2f} x clean "
            f"[{ok('e')}]",
        ]
    )
