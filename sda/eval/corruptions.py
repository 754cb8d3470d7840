"""ImageNet-C's corruptions as pure functions of an image: ``corrupt(img, name, severity, profile, seed)``.

The 15 corruptions follow ``hendrycks/robustness`` (``ImageNet-C/create_c/``) with two
severity profiles:

- ``imagenet`` (default): the 224 px parameters of ``make_imagenet_c.py``. Images are resized
  (short side 256, bilinear) and center-cropped to 224 first, as ImageNet-C was, and saved as
  JPEG quality 85 (``optimize=True``), as ImageNet-C was.
- ``cifar``: the CIFAR-10-C parameters of ``make_cifar_c.py`` for 32 px images, applied at the
  native size (no resize); several ImageNet-C severity-5 settings erase or leave unchanged a
  32 px image.

The corruption code is ours; the textures for ``frost`` come from the ``corrupt-tta`` package
(identical files to ImageNet-C's). Differences from the original scripts, on purpose:
ImageMagick's motion blur (``snow``, ``motion_blur``) is replaced by the same one-sided
Gaussian line kernel computed with OpenCV, truncated to 8 bits as ImageMagick does (``to_8bit``);
every random draw comes from a per-image generator (``sda.utils.seed.image_seed(seed, corruption,
severity, relative path)``, see ``sda.eval.builders``) instead of NumPy's global state, so the output
does not depend on the number of workers or the order of work.
(``corrupt-tta`` itself is not used for the math: it has no parameter profiles, ignores fog's
decay parameter, uses 224 instead of ImageNet-C's 244 in ``elastic_transform`` and draws
impulse noise from an unseeded generator.)
"""

from __future__ import annotations

import functools
import io
import math
from typing import Any

import numpy as np
from PIL import Image

from sda.utils.errors import UserError
from sda.utils.layout import SEVERITIES, parse_corruptions

JPEG_QUALITY = 85  # ImageNet-C: Image.save(path, quality=85, optimize=True)

# Parameters per profile and corruption: one entry per severity 1..5 (facts from make_imagenet_c.py
# and make_cifar_c.py). zoom_blur entries are (stop, step) of np.arange(1, stop, step); elastic
# entries are absolute pixels (ImageNet-C multiplies by 244, CIFAR-10-C by 32).
_IMAGENET = {
    "gaussian_noise": [0.08, 0.12, 0.18, 0.26, 0.38],
    "shot_noise": [60, 25, 12, 5, 3],
    "impulse_noise": [0.03, 0.06, 0.09, 0.17, 0.27],
    "defocus_blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
    "glass_blur": [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
    "motion_blur": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
    "zoom_blur": [(1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)],
    "snow": [
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ],
    "frost": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],
    "fog": [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)],
    "brightness": [0.1, 0.2, 0.3, 0.4, 0.5],
    "contrast": [0.4, 0.3, 0.2, 0.1, 0.05],
    "elastic_transform": [
        tuple(244 * v for v in c)
        for c in [(2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02)]
    ],
    "pixelate": [0.6, 0.5, 0.4, 0.3, 0.25],
    "jpeg_compression": [25, 18, 15, 10, 7],
}
_CIFAR = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    "zoom_blur": [(1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)],
    "snow": [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "elastic_transform": [
        tuple(32 * v for v in c)
        for c in [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)]
    ],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "jpeg_compression": [80, 65, 58, 50, 40],
}
# resize: (short side, center crop) before corrupting, or None; frost_scale: texture resize factor.
PROFILES: dict[str, dict[str, Any]] = {
    "imagenet": {"params": _IMAGENET, "resize": (256, 224), "frost_scale": 1.0, "format": "jpeg"},
    "cifar": {"params": _CIFAR, "resize": None, "frost_scale": 0.2, "format": "png"},
}
FORMATS = {"jpeg": ".JPEG", "png": ".png"}


# ----------------------------------------------------------------------------- helpers
def _disk(radius: float, alias_blur: float) -> np.ndarray:
    import cv2

    if radius <= 8:
        L, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        L, ksize = np.arange(-radius, radius + 1), (5, 5)
    X, Y = np.meshgrid(L, L)
    disk = ((X**2 + Y**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


def _plasma_fractal(mapsize: int, wibbledecay: float, rng: np.random.RandomState) -> np.ndarray:
    """Diamond-square height map in [0, 1], (mapsize, mapsize); mapsize a power of two."""
    m = np.zeros((mapsize, mapsize), dtype=np.float64)
    step, wibble = mapsize, 100.0

    def wibbled_mean(a: np.ndarray) -> np.ndarray:
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

    while step >= 2:
        half = step // 2
        corners = m[0::step, 0::step]
        sq = corners + np.roll(corners, -1, axis=0)
        sq += np.roll(sq, -1, axis=1)
        m[half::step, half::step] = wibbled_mean(sq)
        dr, ul = m[half::step, half::step], m[0::step, 0::step]
        m[0::step, half::step] = wibbled_mean(dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1))
        m[half::step, 0::step] = wibbled_mean(dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0))
        step //= 2
        wibble /= wibbledecay
    m -= m.min()
    return m / m.max()


def _clipped_zoom(img: np.ndarray, zoom: float) -> np.ndarray:
    """Zoom into the center of (H, W, C) by ``zoom`` and crop back to (H, W, C)."""
    from scipy.ndimage import zoom as scizoom

    h, w = img.shape[:2]
    ch, cw = int(np.ceil(h / zoom)), int(np.ceil(w / zoom))
    top, left = (h - ch) // 2, (w - cw) // 2
    out = scizoom(img[top : top + ch, left : left + cw], (zoom, zoom, 1), order=1)
    tt, tl = (out.shape[0] - h) // 2, (out.shape[1] - w) // 2
    return out[tt : tt + h, tl : tl + w]


def to_8bit(x: np.ndarray) -> np.ndarray:
    """ImageMagick's motion blur result as 8-bit levels: truncated, as ImageMagick 6 writes it (compared with
    Hendrycks' make_imagenet_c.py / make_cifar_c.py run with ImageMagick 6.9.11 on the same images and seeds,
    flooring matches 99.8% (motion_blur) and 99.9% (snow) of pixels, at most 1 level apart; rounding
    differed by 1 level in 49% of motion-blur pixels)."""
    return np.floor(x)


def _motion_blur(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's MotionBlurImage: a one-sided Gaussian along ``angle`` (degrees), edge pixels."""
    import cv2

    width = int(2 * math.ceil(radius) + 1)
    i = np.arange(width)
    k = np.exp(-(i**2) / (2.0 * sigma**2))
    k /= k.sum()
    px, py = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    norm = math.hypot(px, py)
    off_x = np.ceil(i * py / norm - 0.5).astype(int)
    off_y = np.ceil(i * px / norm - 0.5).astype(int)
    kernel = np.zeros((2 * width + 1, 2 * width + 1))
    np.add.at(kernel, (width + off_y, width + off_x), k)
    return cv2.filter2D(x.astype(np.float64), -1, kernel, borderType=cv2.BORDER_REPLICATE)


@functools.lru_cache(maxsize=16)
def _frost_texture(idx: int, scale: float) -> np.ndarray:
    from importlib import resources

    import cv2

    name = f"frost{idx}.png" if idx <= 3 else f"frost{idx}.jpg"
    path = resources.files("corrupt_tta") / "assets" / "frost" / name
    with resources.as_file(path) as p:
        tex = cv2.imread(str(p))  # BGR
    if tex is None:
        raise UserError(f"frost texture {name} is missing from the corrupt-tta package; reinstall corrupt-tta")
    if scale != 1.0:
        tex = cv2.resize(tex, (0, 0), fx=scale, fy=scale)
    return tex[..., ::-1].copy()  # RGB


# ----------------------------------------------------------------------------- corruptions
# Each takes x: float64 (H, W, 3) in [0, 255], the severity's parameter and a RandomState;
# returns float (H, W, 3) in [0, 255].
def _gaussian_noise(x, c, rng):
    x = x / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def _shot_noise(x, c, rng):
    x = x / 255.0
    return np.clip(rng.poisson(x * c) / float(c), 0, 1) * 255


def _impulse_noise(x, c, rng):
    from skimage.util import random_noise

    out = random_noise(x / 255.0, mode="s&p", amount=c, rng=int(rng.randint(2**31)))
    return np.clip(out, 0, 1) * 255


def _defocus_blur(x, c, rng):
    import cv2

    kernel = _disk(radius=c[0], alias_blur=c[1])
    return np.clip(cv2.filter2D(x / 255.0, -1, kernel), 0, 1) * 255


def _glass_blur(x, c, rng):
    from skimage.filters import gaussian

    sigma, delta, iters = c
    x = np.uint8(gaussian(x / 255.0, sigma=sigma, channel_axis=-1) * 255)
    h, w = x.shape[:2]
    rows, cols = range(h - delta, delta, -1), range(w - delta, delta, -1)
    for _ in range(iters):
        shifts = rng.randint(-delta, delta, size=(len(rows) * len(cols), 2))  # (dx, dy) per pixel
        k = 0
        for r in rows:
            for col in cols:
                rp, cp = r + shifts[k, 1], col + shifts[k, 0]
                k += 1
                # The reference's tuple "swap" of NumPy views copies the neighbour onto the pixel
                # and leaves the neighbour unchanged; ImageNet-C was made that way, so we do the same.
                x[r, col] = x[rp, cp]
    return np.clip(gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255


def _motion_blur_corruption(x, c, rng):
    angle = rng.uniform(-45, 45)
    out = _motion_blur(np.uint8(x), radius=c[0], sigma=c[1], angle=angle)
    return np.clip(to_8bit(out), 0, 255)  # ImageMagick returns 8-bit pixels


def _zoom_blur(x, c, rng):
    x = (x / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    factors = np.arange(1, c[0], c[1])
    for z in factors:
        out += _clipped_zoom(x, z)
    return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


def _snow(x, c, rng):
    import cv2

    x = x.astype(np.float32) / 255.0
    h, w = x.shape[:2]
    layer = rng.normal(size=(h, w), loc=c[0], scale=c[1])
    layer = _clipped_zoom(layer[..., None], c[2])[..., 0]
    layer[layer < c[3]] = 0
    layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8)  # the reference passes it as an 8-bit PNG
    layer = np.clip(to_8bit(_motion_blur(layer, c[4], c[5], rng.uniform(-135, -45))), 0, 255) / 255.0
    layer = layer[..., None].astype(np.float32)
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(h, w, 1)
    x = c[6] * x + (1 - c[6]) * np.maximum(x, gray * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


def _frost(x, c, rng, scale: float = 1.0):
    import cv2

    idx = rng.randint(5) + 1  # the reference draws frost1..frost5
    tex = _frost_texture(idx, scale)
    h, w = x.shape[:2]
    if tex.shape[0] <= h or tex.shape[1] <= w:  # texture smaller than the image: enlarge it
        f = max((h + 1) / tex.shape[0], (w + 1) / tex.shape[1])
        tex = cv2.resize(tex, (math.ceil(tex.shape[1] * f), math.ceil(tex.shape[0] * f)))
    top, left = rng.randint(0, tex.shape[0] - h), rng.randint(0, tex.shape[1] - w)
    return np.clip(c[0] * x + c[1] * tex[top : top + h, left : left + w], 0, 255)


def _fog(x, c, rng):
    x = x / 255.0
    h, w = x.shape[:2]
    max_val = x.max()
    size = 1 << max(1, math.ceil(math.log2(max(h, w))))
    x = x + c[0] * _plasma_fractal(size, c[1], rng)[:h, :w][..., None]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


def _brightness(x, c, rng):
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(x / 255.0)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1) * 255


def _contrast(x, c, rng):
    x = x / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def _elastic_transform(x, c, rng):
    import cv2
    from scipy.ndimage import map_coordinates
    from skimage.filters import gaussian

    image = x.astype(np.float32) / 255.0
    h, w = image.shape[:2]
    center = np.float32((h, w)) // 2
    sq = min(h, w) // 3
    pts1 = np.float32([center + sq, [center[0] + sq, center[1] - sq], center - sq])
    pts2 = pts1 + rng.uniform(-c[2], c[2], size=pts1.shape).astype(np.float32)
    M = cv2.getAffineTransform(pts1, pts2)
    image = cv2.warpAffine(image, M, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    dx = (gaussian(rng.uniform(-1, 1, size=(h, w)), c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
    dy = (gaussian(rng.uniform(-1, 1, size=(h, w)), c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    coords = np.stack([(gy + dy).ravel(), (gx + dx).ravel()])  # (2, H*W)
    out = np.stack(
        [map_coordinates(image[..., k], coords, order=1, mode="reflect").reshape(h, w) for k in range(image.shape[2])],
        axis=-1,
    )
    return np.clip(out, 0, 1) * 255


def _pixelate(x, c, rng):
    h, w = x.shape[:2]
    img = Image.fromarray(np.uint8(x))
    img = img.resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.BOX)
    return np.asarray(img, dtype=np.float64)


def _jpeg_compression(x, c, rng):
    buf = io.BytesIO()
    Image.fromarray(np.uint8(x)).save(buf, "JPEG", quality=c)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float64)


_FUNCS = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur_corruption,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}


def check_profile(profile: str) -> dict[str, Any]:
    if profile not in PROFILES:
        raise UserError(f"unknown severity profile {profile!r}; use one of {', '.join(PROFILES)}")
    return PROFILES[profile]


def corrupt(img: np.ndarray, name: str, severity: int, profile: str = "imagenet", seed: int = 0) -> np.ndarray:
    """Corrupt one RGB uint8 image (H, W, 3) -> uint8 (H, W, 3); deterministic given ``seed``.

    The image is used at its given size (see ``preprocess`` for the ImageNet-C resize/crop).
    """
    prof = check_profile(profile)
    parse_corruptions([name])
    if severity not in SEVERITIES:
        raise UserError(f"severity {severity} is not in 1..5")
    c = prof["params"][name][severity - 1]
    rng = np.random.RandomState(seed % (2**32))
    x = np.asarray(img, dtype=np.float64)  # (H, W, 3)
    if name == "frost":
        out = _frost(x, c, rng, scale=prof["frost_scale"])
    else:
        out = _FUNCS[name](x, c, rng)
    return np.uint8(np.clip(out, 0, 255))  # truncation, as np.uint8 in the reference


def preprocess(img: Image.Image, profile: str = "imagenet") -> Image.Image:
    """The profile's geometry: ImageNet-C's Resize(256) + CenterCrop(224) (torchvision, bilinear)."""
    import torchvision.transforms.functional as TF

    resize = check_profile(profile)["resize"]
    if resize is None:
        return img
    short, crop = resize
    img = TF.resize(img, short, interpolation=TF.InterpolationMode.BILINEAR)
    return TF.center_crop(img, crop)
