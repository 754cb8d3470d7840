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
