"""The ``glyphs32`` mini benchmark's data: a procedural 10-class digit set at 32x32 RGB, built offline from a seed.

Each image is one digit 0-9 drawn with PIL in one of the TrueType fonts that ship with matplotlib
(``matplotlib/mpl-data/fonts/ttf``), rendered ``supersample`` times larger than the output, rotated,
shifted and box-downsampled to 32 px, in a random colour, over a tinted crop of one of the photos
and textures bundled inside scikit-image (``skimage/data``; only images stored in the installed
package are used, nothing is fetched). Nothing is downloaded.

The design targets the three properties SDA's gain needs (see the benchmark notes):

- the class survives a cubic resize down by 2 and back up (the digit is 13-22 px tall, so it is
  6-11 px tall at 16 px);
- a classifier trained on clean images still relies on the detail above that band (thin strokes,
  sharp glyph edges against a textured background), so it fails on noise, blur and pixelation;
- the backgrounds are natural textures at several scales, so a small diffusion model re-draws them
  (and the glyph's edges) in its own way.

Layout written by :func:`write_glyphs32`::

    <out>/<split>/<class:04d>/<index:06d>.png     split in (train, val, test)
    <out>/split.json                              the summary (knobs, counts, fonts, images, hashes)

Determinism: image ``i`` of split ``s`` is drawn from ``numpy.random.default_rng([seed, s_id, i])``
only, so a split's content does not depend on the other splits' sizes or the order of work; the
labels of a split are a seeded permutation of a balanced list (stratified). ``split_sha256`` hashes
every image's relative path, label and raw pixels (not the PNG bytes), so it is independent of the
PNG encoder. Glyph rasterisation goes through FreeType; a different FreeType version may change
pixels (the hash then says so).

Command line: ``python mini/prepare_data.py --benchmark glyphs32`` (``data/mini/glyphs32``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sda.utils.io import save_image, write_json

IMAGE_SIZE = 32
NUM_CLASSES = 10
SPLITS = ("train", "val", "test")
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
DEFAULT_SIZES = {"train": 3000, "val": 500, "test": 1000}

# Fonts of matplotlib/mpl-data/fonts/ttf whose ASCII digits 0-9 are ordinary lining digits.
# Left out: the symbol/extension fonts (STIXNonUni*, STIXSiz*, cmex10, cmsy10, cmmi10 - the latter
# has old-style digits), LastResortHE (placeholder boxes), the *Display variants (no digits) and cmti10
# (its italic digits come out much smaller and thinner than the others at the same ink-box height).
FONTS: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
)

# skimage.data loaders whose image is stored inside the installed scikit-image package (checked
# with the network blocked). Left out: text/page (letters), checkerboard/chessboard/logo/colorwheel/
# horse/phantom (synthetic graphics) and the pooch-fetched images.
BACKGROUNDS: tuple[str, ...] = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
    "clock",
    "cell",
)


@dataclass(frozen=True)
class GlyphStyle:
    """The data knobs (chosen on the validation split). Ranges are (low, high), drawn uniformly.

    glyph_height: digit height in output pixels (before rotation).
    rotation: maximal absolute rotation in degrees.
    shift: maximal absolute shift of the digit centre, in output pixels, per axis (clipped so the
        digit stays inside the frame).
    texture_scale: side of the square background crop divided by the output size (1 = the photo's
        native resolution; larger = a zoomed-out, busier texture).
    bg_contrast: factor on the background's deviations from its mean (1 = as cropped).
    tint: weight of a random colour multiplied into the background (0 = the photo's own colours).
    luma_gap: |luminance(glyph colour) - mean luminance(background)|, in [0, 1] (the glyph's contrast).
    supersample: rendering scale of the glyph before the box downsample.
    """

    glyph_height: tuple[float, float] = (13.0, 22.0)
    rotation: float = 15.0
    shift: float = 4.0
    texture_scale: tuple[float, float] = (1.0, 6.0)
    bg_contrast: tuple[float, float] = (0.7, 1.2)
    tint: tuple[float, float] = (0.3, 0.8)
    luma_gap: tuple[float, float] = (0.12, 0.45)
    supersample: int = 4
    fonts: tuple[str, ...] = FONTS
    backgrounds: tuple[str, ...] = BACKGROUNDS

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# ------------------------------------------------------------------------------------ resources
def font_dir() -> Path:
    """matplotlib's bundled TrueType folder."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / name), size)


@functools.cache
def _digit_height_ratio(name: str) -> float:
    """Height of the digits' common ink box divided by the font size (measured at size 200)."""
    box = _font(name, 200).getbbox("0123456789", anchor="ls")
    return (box[3] - box[1]) / 200.0


@functools.cache
def load_background(name: str) -> np.ndarray:
    """A bundled ``skimage.data`` image as (H, W, 3) float32 RGB in [0, 1]."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.float32)
    img = img.astype(np.float32)
    if img.max() > 1.0:
        img = img / 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def check_resources(style: GlyphStyle = GlyphStyle()) -> dict[str, Any]:
    """Confirm that every font file and background image ships with the installed packages.

    Backgrounds are loaded with Python sockets disabled, so a loader that would download fails here.
    Returns the file list with sizes (for the summary).
    """
    import socket

    fonts = {}
    for name in style.fonts:
        path = font_dir() / name
        if not path.is_file():
            raise FileNotFoundError(f"font {path} is not in the installed matplotlib")
        fonts[name] = path.stat().st_size
    connect = socket.socket.connect

    def _no_network(*_a: Any, **_k: Any) -> None:
        raise OSError("glyphs32 must not use the network")

    socket.socket.connect = _no_network  # type: ignore[method-assign]
    try:
        shapes = {name: list(load_background(name).shape) for name in style.backgrounds}
    finally:
        socket.socket.connect = connect  # type: ignore[method-assign]
    return {"font_dir": "matplotlib/mpl-data/fonts/ttf", "fonts": fonts, "skimage_data": shapes}


# ------------------------------------------------------------------------------------ drawing
def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of (..., 3) values in [0, 1]."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def render_glyph(
    digit: int,
    font: str,
    height: float,
    angle: float,
    dx: float,
    dy: float,
    size: int = IMAGE_SIZE,
    supersample: int = 4,
) -> np.ndarray:
    """Coverage mask (size, size) float32 in [0, 1] of ``digit`` in ``font``.

    The digit's ink box is ``height`` output pixels tall, centred at the frame centre + (dx, dy)
    output pixels, rotated by ``angle`` degrees (counter-clockwise) about its centre. Rendered at
    ``supersample`` times the size and box-downsampled (an exact area average).
    """
    big = size * supersample
    font_size = max(4, int(round(height * supersample / _digit_height_ratio(font))))
    f = _font(font, font_size)
    text = str(int(digit))
    x0, y0, x1, y1 = f.getbbox(text, anchor="ls")
    pad = int(max(x1 - x0, y1 - y0))
    canvas = Image.new("L", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - x0, pad - y0), text, fill=255, font=f, anchor="ls")
    canvas = canvas.rotate(angle, resample=Image.BICUBIC, expand=True)  # about the ink box centre
    frame = Image.new("L", (big, big), 0)
    cx = big / 2 + dx * supersample - canvas.width / 2
    cy = big / 2 + dy * supersample - canvas.height / 2
    frame.paste(canvas, (int(round(cx)), int(round(cy))))
    small = frame.resize((size, size), Image.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def render_background(rng: np.random.Generator, style: GlyphStyle, size: int = IMAGE_SIZE) -> np.ndarray:
    """(size, size, 3) float32 in [0, 1]: a random square crop of a bundled photo, resized, tinted."""
    img = load_background(style.backgrounds[int(rng.integers(len(style.backgrounds)))])
    h, w, _ = img.shape
    side = int(round(size * rng.uniform(*style.texture_scale)))
    side = max(size // 2, min(side, h, w))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = img[top : top + side, left : left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = np.rot90(crop, int(rng.integers(4)))
    pil = Image.fromarray(np.clip(np.round(crop * 255.0), 0, 255).astype(np.uint8))
    bg = np.asarray(pil.resize((size, size), Image.LANCZOS if side > size else Image.BICUBIC), dtype=np.float32) / 255.0
    tint = rng.uniform(0.15, 1.0, size=3).astype(np.float32)
    weight = rng.uniform(*style.tint)
    bg = bg * ((1.0 - weight) + weight * tint / tint.max())
    mean = bg.mean(axis=(0, 1), keepdims=True)
    bg = mean + rng.uniform(*style.bg_contrast) * (bg - mean)
    return np.clip(bg, 0.0, 1.0).astype(np.float32)


def glyph_colour(rng: np.random.Generator, bg_luma: float, gap: tuple[float, float]) -> np.ndarray:
    """A random RGB colour whose luminance is ``bg_luma`` +- a gap drawn from ``gap`` (lighter or
    darker at random where both fit in [0, 1], else the side with more room; clipped to [0, 1])."""
    g = rng.uniform(*gap)
    up_ok, down_ok = bg_luma + g <= 1.0, bg_luma - g >= 0.0
    coin = bool(rng.random() < 0.5)
    lighter = coin if up_ok == down_ok and up_ok else up_ok if up_ok != down_ok else bg_luma < 0.5
    target = float(np.clip(bg_luma + g if lighter else bg_luma - g, 0.0, 1.0))
    colour = rng.uniform(0.0, 1.0, size=3)
    # move the random colour to the target luminance; clipping may leave it a little off
    colour = np.clip(colour + (target - luminance(colour)), 0.0, 1.0)
    return colour.astype(np.float32)


def render_image(
    digit: int, rng: np.random.Generator, style: GlyphStyle = GlyphStyle(), size: int = IMAGE_SIZE
) -> np.ndarray:
    """One glyphs32 image (size, size, 3) uint8 of class ``digit``, every draw from ``rng``."""
    font = style.fonts[int(rng.integers(len(style.fonts)))]
    height = rng.uniform(*style.glyph_height)
    angle = rng.uniform(-style.rotation, style.rotation)
    room = max(0.0, (size - height * 1.15) / 2.0)  # keep the digit inside the frame
    lim = min(style.shift, room)
    dx, dy = rng.uniform(-lim, lim, size=2)
    mask = render_glyph(digit, font, height, angle, dx, dy, size, style.supersample)[..., None]  # (H, W, 1)
    bg = render_background(rng, style, size)  # (H, W, 3)
    colour = glyph_colour(rng, float(luminance(bg).mean()), style.luma_gap)  # (3,)
    img = bg * (1.0 - mask) + colour[None, None, :] * mask
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------ splits
def split_labels(n: int, seed: int, split: str) -> np.ndarray:
    """Balanced labels (n must be a multiple of 10) in a seeded random order."""
    if n % NUM_CLASSES:
        raise ValueError(f"split size {n} must be a multiple of {NUM_CLASSES} (stratified)")
    labels = np.repeat(np.arange(NUM_CLASSES), n // NUM_CLASSES)
    return np.random.default_rng([seed, SPLIT_IDS[split], 1_000_003]).permutation(labels)


def make_split(split: str, n: int, seed: int, style: GlyphStyle = GlyphStyle()) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 32, 32, 3) uint8, labels (n,) int64) of one split."""
    labels = split_labels(n, seed, split)
    images = (
        np.stack(
            [
                render_image(int(c), np.random.default_rng([seed, SPLIT_IDS[split], i]), style)
                for i, c in enumerate(labels)
            ]
        )
        if n
        else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    )
    return images, labels.astype(np.int64)


def relpath(label: int, index: int) -> str:
    return f"{label:04d}/{index:06d}.png"


def split_hash(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 over (relative path, label, shape, raw pixels) of every image in index order."""
    h = hashlib.sha256()
    for i, (img, c) in enumerate(zip(images, labels, strict=True)):
        h.update(f"{relpath(int(c), i)}|{int(c)}|{img.shape}|".encode())
        h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


def write_glyphs32(
    out_dir: str | os.PathLike, seed: int = 0, sizes: Mapping[str, int] | None = None, style: GlyphStyle = GlyphStyle()
) -> dict[str, Any]:
    """Write the splits as class-folder PNGs under ``out_dir``; returns the summary (also ``split.json``)."""
    out = Path(out_dir)
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}; use {SPLITS}")
    resources = check_resources(style)
    hashes, counts = {}, {}
    for split, n in sizes.items():
        images, labels = make_split(split, n, seed, style)
        for i, (img, c) in enumerate(zip(images, labels, strict=True)):
            save_image(Image.fromarray(img, mode="RGB"), out / split / relpath(int(c), i), format="PNG")
        hashes[split] = split_hash(images, labels)
        counts[split] = {f"{c:04d}": int((labels == c).sum()) for c in range(NUM_CLASSES)}
    overall = hashlib.sha256("".join(f"{s}:{hashes[s]};" for s in sorted(hashes)).encode()).hexdigest()
    summary = {
        "dataset": "glyphs32: digits 0-9 in matplotlib's bundled fonts over tinted crops of scikit-image's "
        "bundled photos, 32x32 RGB (procedural, offline)",
        "seed": seed,
        "sizes": sizes,
        "counts": counts,
        "style": style.to_dict(),
        "resources": resources,
        "versions": _versions(),
        "split_sha256": hashes,
        "sha256": overall,
    }
    write_json(out / "split.json", summary)
    return summary


def _versions() -> dict[str, str]:
    import matplotlib
    import PIL
    import skimage

    return {
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "freetype": str(ImageFont.core.freetype2_version),
        "matplotlib": matplotlib.__version__,
        "scikit-image": skimage.__version__,
    }
