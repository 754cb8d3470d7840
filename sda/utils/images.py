"""Image helpers every stage shares: ADM's input crop, the references' float -> uint8 mappings, one grid maker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from PIL import Image

Convention = Literal["dit", "adm"]


def center_crop_arr(img: Image.Image, image_size: int) -> np.ndarray:
    """guided-diffusion's preprocessing: halve with BOX while the short side >= 2 * image_size, BICUBIC
    so the short side is image_size (Python rounding), center crop. Returns (S, S, 3) uint8."""
    while min(*img.size) >= 2 * image_size:
        img = img.resize(tuple(x // 2 for x in img.size), resample=Image.BOX)
    scale = image_size / min(*img.size)
    img = img.resize(tuple(round(x * scale) for x in img.size), resample=Image.BICUBIC)
    arr = np.array(img)  # (H, W, 3)
    top = (arr.shape[0] - image_size) // 2
    left = (arr.shape[1] - image_size) // 2
    return arr[top : top + image_size, left : left + image_size]


def to_uint8(x: torch.Tensor, convention: Convention) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 of the same shape, with the arithmetic of each reference.

    - ``"dit"``: DiT's ``sample.py``: ``clamp(127.5 x + 128, 0, 255)``, truncated;
    - ``"adm"``: the reference's ``torchvision.utils.save_image(normalize=True, range=(-1, 1))``: clamp
      to [-1, 1], ``(x + 1) / 2 * 255 + 0.5``, clamp to [0, 255], truncated.
    Both are 127.5 x + 128 on paper; their float32 rounding differs in about 3 pixels per million, so each
    stage keeps its reference's order of operations.
    """
    if convention == "dit":
        return torch.clamp(127.5 * x + 128.0, 0, 255).to(torch.uint8)
    if convention == "adm":
        x = (x.float().clamp(-1, 1) + 1) / 2
        return (x * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    raise ValueError(f"unknown uint8 convention {convention!r}: use 'dit' or 'adm'")


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> an RGB PIL image with the ADM mapping."""
    return Image.fromarray(to_uint8(x, "adm").permute(1, 2, 0).cpu().numpy())


def tile_grid(
    rows: Sequence[Sequence[Image.Image]], pad: int = 0, cell: int | None = None, background: str = "white"
) -> Image.Image:
    """One grid: row i holds the images ``rows[i]`` side by side, ``pad`` pixels apart and around.

    ``cell``: resize every tile to ``cell`` x ``cell`` (nearest, for small images); None keeps the size
    of the first tile (all tiles must share it).
    """
    w, h = (cell, cell) if cell is not None else rows[0][0].size
    ncols = max(len(r) for r in rows)
    canvas = Image.new("RGB", (ncols * (w + pad) + pad, len(rows) * (h + pad) + pad), background)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            tile = tile.convert("RGB")
            if cell is not None:
                tile = tile.resize((cell, cell), Image.NEAREST)
            canvas.paste(tile, (pad + j * (w + pad), pad + i * (h + pad)))
    return canvas


def labelled_grid(
    rows: Sequence[Sequence[Image.Image]],
    row_labels: Sequence[str],
    groups: Sequence[tuple[str, int]],
    cell: int = 64,
    pad: int = 2,
    font_size: int = 12,
) -> Image.Image:
    """:func:`tile_grid` with a label left of every row and a header over every column group.

    ``groups``: (title, number of columns) from left to right, e.g. ``[("raw", 4), ("projected", 4)]``;
    a thin gap separates the groups.
    """
    from PIL import ImageDraw, ImageFont

    if len(row_labels) != len(rows):
        raise ValueError(f"{len(row_labels)} row labels for {len(rows)} rows")
    if sum(n for _, n in groups) != max(len(r) for r in rows):
        raise ValueError(f"column groups {list(groups)} do not cover the {max(len(r) for r in rows)} columns")
    font = ImageFont.load_default(size=font_size)
    gap = 3 * pad  # between column groups
    left = 8 + max(int(font.getlength(t)) for t in row_labels)
    top = 6 + font_size + 4
    width = left + sum(n * (cell + pad) for _, n in groups) + gap * (len(groups) - 1) + pad
    height = top + len(rows) * (cell + pad) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x0s, x = [], left + pad
    for _, n in groups:
        x0s.append(x)
        x += n * (cell + pad) + gap
    for (title, n), x0 in zip(groups, x0s, strict=True):
        span = n * (cell + pad) - pad
        draw.text((x0 + (span - font.getlength(title)) / 2, 4), title, fill="black", font=font)
        draw.line([(x0, top - 3), (x0 + span, top - 3)], fill="gray")
    for i, (row, label) in enumerate(zip(rows, row_labels, strict=True)):
        y = top + pad + i * (cell + pad)
        draw.text((4, y + (cell - font_size) / 2), label, fill="black", font=font)
        col = 0
        for (_, n), x0 in zip(groups, x0s, strict=True):
            for j in range(n):
                if col + j < len(row):
                    tile = row[col + j].convert("RGB").resize((cell, cell), Image.NEAREST)
                    canvas.paste(tile, (x0 + j * (cell + pad), y))
            col += n
    return canvas
