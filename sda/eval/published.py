"""The SDA paper's published numbers (Gao et al., CVPR 2025, Table 1): top-1 accuracy (%) of the five classifiers.

ImageNet-C is the mean over its 15 corruptions at severity 5; ImageNet-W is the whole watermarked val set. GDA
(Tsai et al., 2023) is not reimplemented here; its published numbers stay for comparison. Clean: the source
models' ImageNet val top-1 as the paper states it (MMPreTrain's model-zoo numbers, rounded).
"""

from __future__ import annotations

MODELS = ("ResNet50", "SwinT", "ConvNeXtT", "SwinB", "ConvNeXtB")  # configs/{finetune,eval}/<Model>.py
MODEL_NAMES = {  # as the paper prints them
    "ResNet50": "ResNet-50",
    "SwinT": "Swin-T",
    "ConvNeXtT": "ConvNeXt-T",
    "SwinB": "Swin-B",
    "ConvNeXtB": "ConvNeXt-B",
}

# column -> one value per model in MODELS (None: not published)
IMAGENET_C: dict[str, tuple[float | None, ...]] = {
    "Source": (18.7, 33.1, 39.3, 40.5, 45.6),
    "MEMO": (24.7, 29.5, 37.8, 37.0, 45.8),
    "DiffPure": (16.8, 24.8, 28.8, 28.9, 32.7),
    "GDA": (31.8, 42.2, 44.8, None, None),
    "DDA": (29.7, 40.0, 44.2, 44.5, 49.4),
    "SDA": (32.5, 42.5, 47.0, 47.4, 51.9),
}
IMAGENET_W: dict[str, tuple[float | None, ...]] = {
    "Source": (37.7, 66.5, 67.6, 69.1, 70.1),
    "DiffPure": (29.1, 52.7, 55.8, 55.5, 57.7),
    "DDA": (52.8, 65.9, 67.9, 68.3, 70.3),
    "SDA": (54.7, 67.3, 69.4, 70.6, 72.3),
}
CLEAN: tuple[float, ...] = (76.6, 81.2, 82.1, 83.4, 83.9)

TABLES = {"C": IMAGENET_C, "W": IMAGENET_W}
SEVERITY = 5  # the paper's ImageNet-C table is severity 5 only
CORRUPTIONS = 15  # ... averaged over all 15 corruptions


def published(datatype: str, column: str, model: str) -> float | None:
    """The paper's number for ``model``'s ``column`` on ``datatype`` ("C", "W" or "clean"), or None."""
    if model not in MODELS:
        return None
    i = MODELS.index(model)
    if datatype == "clean":
        return CLEAN[i] if column == "Source" else None
    values = TABLES.get(datatype, {}).get(column)
    return None if values is None else values[i]


def markdown() -> str:
    """The published tables in Markdown (what ``eval/report.py --published`` prints)."""
    lines = []
    for title, table in (("ImageNet-C, severity 5, mean over 15 corruptions", IMAGENET_C), ("ImageNet-W", IMAGENET_W)):
        cols = list(table)
        lines += [f"**{title}: top-1 (%)**", "", "| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for i, m in enumerate(MODELS):
            cells = ["-" if table[c][i] is None else f"{table[c][i]:.1f}" for c in cols]
            lines.append(f"| {MODEL_NAMES[m]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(
        "Clean ImageNet val top-1 of the source models: "
        + ", ".join(f"{MODEL_NAMES[m]} {v:.1f}" for m, v in zip(MODELS, CLEAN, strict=True))
    )
    return "\n".join(lines) + "\n"
