"""Model-adaptation baselines of Stage 4, on the raw target images: test-time BatchNorm, TENT and MEMO.

- ``norm`` (test-time BatchNorm; Schneider et al. 2020, Nado et al. 2020): every BatchNorm normalises with
  the statistics of the test batch instead of its running ones; weights unchanged. Models without
  BatchNorm (Swin and ConvNeXt use LayerNorm) are unchanged: the column equals Source and says so.
- ``tent`` (Wang et al., ICLR 2021): the normalisation layers use test-batch statistics and their affine
  weight and bias are updated online by one SGD step per batch on the mean prediction entropy; the
  predictions are those of the forward pass that computes the loss; the model is reset to the source
  at the start of every corruption/severity.
- ``memo`` (Zhang, Levine & Finn, NeurIPS 2022): per image, ``views`` AugMix-style augmentations (a
  random resized crop and flip, then AugMix at severity 1), one SGD step on all parameters minimising
  the entropy of the marginal (averaged) prediction, then the prediction on the test image; the model
  is reset after every image (episodic). BatchNorm mixes the source's statistics with the batch's
  (prior strength 16: weights 16/17 and 1/17), as MEMO's code does.

Streams: within each subset the images are visited in a seeded permutation (``--seed``) and cut into
batches of ``batch_size``, so TENT's online updates see mixed classes and are reproducible. Subsets
are independent streams (TENT resets between them) and are dealt to ranks whole, so the results do
not depend on the number of processes.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor, nn

from sda.utils.errors import UserError
from sda.utils.options import option
from sda.utils.seed import image_seed

METHODS = ("norm", "tent", "memo")
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class TTAConfig:
    """The methods to run and their hyperparameters (defaults: the authors' ImageNet-C settings)."""

    methods: tuple[str, ...] | str = option(
        (), "adaptation baselines on the raw images: a comma list of norm,tent,memo", names=("--tta",)
    )
    tta_batch_size: int = option(64, "test-time BN and TENT batch (TENT's ImageNet batch)", names=("--tta-batch-size",))
    tent_lr: float = option(
        0.00025, "TENT: SGD lr 0.00025, momentum 0.9 for batch 64 (ImageNet-C)", names=("--tent-lr",)
    )
    tent_momentum: float = option(0.9, names=("--tent-momentum",))
    memo_views: int = option(64, "MEMO: augmented copies per image", names=("--memo-views",))
    memo_lr: float = option(
        0.00025, "MEMO, ResNet-50: SGD lr 0.00025, no momentum or weight decay", names=("--memo-lr",)
    )
    memo_prior: float = option(
        16.0, "MEMO's BN prior strength: the source statistics weigh this many images", names=("--memo-prior",)
    )
    memo_steps: int = option(1, names=("--memo-steps",))
    augmix_severity: int = 1
    augmix_width: int = 3
    augmix_depth: int = -1  # -1: 1..3 ops at random
    augmix_alpha: float = 1.0

    def __post_init__(self) -> None:
        names = self.methods.split(",") if isinstance(self.methods, str) else self.methods
        names = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
        for n in names:
            if n not in METHODS:
                raise UserError(f"--tta {n!r}: use a comma list of {', '.join(METHODS)}")
        object.__setattr__(self, "methods", names)
        if self.tta_batch_size < 1 or self.memo_views < 1 or self.memo_steps < 1 or self.memo_prior < 0:
            raise UserError("--tta-batch-size, --memo-views and --memo-steps must be positive, --memo-prior >= 0")


# ----------------------------------------------------------------------------- losses
def entropy(logits: Tensor) -> Tensor:
    """Shannon entropy (nats) of softmax(logits) per row: (N, C) -> (N,)."""
    return -(logits.softmax(1) * logits.log_softmax(1)).sum(1)


def marginal_entropy(logits: Tensor) -> Tensor:
    """Entropy of the average prediction over B views of one image: (B, C) -> (). MEMO's loss."""
    log_p = logits.log_softmax(1)  # (B, C)
    avg = torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])  # (C,) log of the mean probability
    return -(avg.exp() * avg).sum()


# ----------------------------------------------------------------------------- normalisation layers
def norm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, NORM_TYPES)]


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def use_batch_statistics(model: nn.Module) -> nn.Module:
    """BatchNorm normalises with the statistics of each forward's batch (running statistics dropped)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean, m.running_var = None, None
    return model


def test_time_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose BatchNorm uses test-batch statistics (``norm``)."""
    return use_batch_statistics(copy.deepcopy(model).eval())


def tent_model(model: nn.Module, cfg: TTAConfig) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A copy configured as TENT does: test-batch statistics, only the normalisation layers' affine
    weight and bias trainable, SGD with momentum over them."""
    m = use_batch_statistics(copy.deepcopy(model).eval())
    m.requires_grad_(False)
    params = []
    for layer in norm_layers(m):
        for p in (getattr(layer, "weight", None), getattr(layer, "bias", None)):
            if p is not None:
                p.requires_grad_(True)
                params.append(p)
    if not params:
        raise ValueError("TENT needs normalisation layers with affine parameters")
    return m, torch.optim.SGD(params, lr=cfg.tent_lr, momentum=cfg.tent_momentum)


@torch.enable_grad()
def tent_step(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor) -> Tensor:
    """One TENT update on a batch; returns the logits of the forward that computed the loss (N, C)."""
    logits = model(x, mode="tensor")  # (N, C)
    loss = entropy(logits).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return logits.detach()


class PriorBatchNorm(nn.Module):
    """MEMO's test-time BatchNorm: mean and variance mix the source's and the batch's as
    ``(N * source + batch) / (N + 1)`` with prior strength N (MEMO: 16), whatever the batch size, as MEMO's
    code does; the batch variance is the unbiased one."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, prior: float):
        super().__init__()
        self.bn, self.prior = bn, prior

    def forward(self, x: Tensor) -> Tensor:
        dims = [0, *range(2, x.dim())]
        n = x.numel() // x.shape[1]
        w = self.prior / (self.prior + 1)
        mean = w * self.bn.running_mean + (1 - w) * x.mean(dims)  # (C,)
        var = w * self.bn.running_var + (1 - w) * x.var(dims, unbiased=n > 1)  # (C,)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.bn.eps)
        if self.bn.affine:
            y = y * self.bn.weight.reshape(shape) + self.bn.bias.reshape(shape)
        return y


def with_prior_bn(model: nn.Module, prior: float) -> nn.Module:
    """Replace every BatchNorm of ``model`` (in place) by :class:`PriorBatchNorm` with the same parameters."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, PriorBatchNorm(child, prior))
        else:
            with_prior_bn(child, prior)
    return model


# ----------------------------------------------------------------------------- AugMix (MEMO's views)
def _ops(size: int, rng: random.Random) -> list[Callable[[Image.Image, int], Image.Image]]:
    """AugMix's operations (Hendrycks et al. 2020): none of them overlaps an ImageNet-C corruption. Each
    draws its strength as AugMix does: a level uniform in [0.1, severity] on a 0-10 scale."""

    def _level(severity: int, maxval: float) -> float:
        return rng.uniform(0.1, severity) * maxval / 10.0

    def sign(v: float) -> float:
        return v if rng.random() >= 0.5 else -v

    def affine(m: tuple) -> Callable[[Image.Image], Image.Image]:
        return lambda im: im.transform((size, size), Image.AFFINE, m, resample=Image.BILINEAR)

    return [
        lambda im, s: ImageOps.autocontrast(im),
        lambda im, s: ImageOps.equalize(im),
        lambda im, s: ImageOps.posterize(im, 4 - int(_level(s, 4))),
        lambda im, s: im.rotate(sign(_level(s, 30)), resample=Image.BILINEAR),
        lambda im, s: ImageOps.solarize(im, 256 - int(_level(s, 256))),
        lambda im, s: affine((1, sign(_level(s, 0.3)), 0, 0, 1, 0))(im),
        lambda im, s: affine((1, 0, 0, sign(_level(s, 0.3)), 1, 0))(im),
        lambda im, s: affine((1, 0, sign(_level(s, size / 3)), 0, 1, 0))(im),
        lambda im, s: affine((1, 0, 0, 0, 1, sign(_level(s, size / 3))))(im),
    ]


def augmix(img: Image.Image, cfg: TTAConfig, rng: random.Random, nrng: np.random.Generator) -> Image.Image:
    """One AugMix view: a random resized crop and flip, then a Dirichlet mix of ``width`` chains of 1-3 ops,
    blended with the crop by a Beta weight (MEMO's "preaugment" + AugMix)."""
    size = img.size[0]
    crop = _random_resized_crop(img, rng)
    if rng.random() < 0.5:
        crop = ImageOps.mirror(crop)
    ops = _ops(size, rng)
    ws = nrng.dirichlet([cfg.augmix_alpha] * cfg.augmix_width)
    m = nrng.beta(cfg.augmix_alpha, cfg.augmix_alpha)
    mix = np.zeros((size, size, 3), dtype=np.float32)
    for w in ws:
        chain = crop
        for _ in range(cfg.augmix_depth if cfg.augmix_depth > 0 else rng.randint(1, 3)):
            chain = rng.choice(ops)(chain, cfg.augmix_severity)
        mix += w * np.asarray(chain, dtype=np.float32)
    out = (1 - m) * np.asarray(crop, dtype=np.float32) + m * mix
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _random_resized_crop(img: Image.Image, rng: random.Random) -> Image.Image:
    """torchvision's RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) back to the image's size, seeded."""
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return img.resize((w, h), Image.BILINEAR, box=(left, top, left + cw, top + ch))
    return img


def memo_views(image: Tensor, cfg: TTAConfig, seed: int) -> Tensor:
    """``cfg.memo_views`` AugMix views of one uint8 (3, H, W) image (channel order kept): (V, 3, H, W) uint8."""
    rng, nrng = random.Random(seed), np.random.default_rng(seed % 2**32)
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())  # channel order does not matter to these ops
    views = [np.asarray(augmix(pil, cfg, rng, nrng)) for _ in range(cfg.memo_views)]
    return torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2)  # (V, 3, H, W)


@torch.enable_grad()
def memo_predict(
    source: nn.Module, image: Tensor, to_input: Callable[[Tensor], Tensor], cfg: TTAConfig, seed: int
) -> Tensor:
    """MEMO on one uint8 image (3, H, W): adapt a fresh copy of ``source`` on its views, then predict (C,).

    The source model is never modified (episodic: every image starts from the source weights).
    """
    model = copy.deepcopy(source).eval()
    if has_batchnorm(model):
        with_prior_bn(model, cfg.memo_prior)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.memo_lr)
    views = to_input(memo_views(image, cfg, seed))  # (V, 3, H, W)
    for _ in range(cfg.memo_steps):
        loss = marginal_entropy(model(views, mode="tensor"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return model(to_input(image[None]), mode="tensor")[0].float()  # (C,)


# ----------------------------------------------------------------------------- streams
def stream_batches(n: int, batch_size: int, seed: int, key: str) -> Iterator[list[int]]:
    """The order in which a subset of ``n`` images is adapted: a seeded permutation cut into batches (a last
    batch of a single image joins the one before, so batch statistics always see more than one image)."""
    order = np.random.default_rng(image_seed(seed, "tta", key) % 2**32).permutation(n).tolist()
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()
        batches[-1] = batches[-1] + last
    yield from batches


def adapt_subset(
    method: str,
    source: nn.Module,
    load: Callable[[Sequence[int]], Tensor],
    to_input: Callable[[Tensor], Tensor],
    n: int,
    cfg: TTAConfig,
    key: tuple[int, str],
) -> Tensor:
    """Logits (n, C) of one subset (one stream) under ``method``.

    ``load(indices)``: uint8 images (B, 3, H, W) of the subset; ``to_input``: to the device, normalised;
    ``key``: (seed, subset name), which fixes the order of the stream and MEMO's augmentations.
    """
    seed, name = key
    if method == "tent":
        model, opt = tent_model(source, cfg)
    elif method == "norm":
        model, opt = test_time_bn(source), None
    else:
        model, opt = source, None
    logits_of: dict[int, Tensor] = {}
    for batch in stream_batches(n, cfg.tta_batch_size, seed, name):
        images = load(batch)  # (B, 3, H, W) uint8
        if method == "memo":
            seeds = [image_seed(seed, "memo", name, i) for i in batch]
            logits = torch.stack(
                [memo_predict(source, im, to_input, cfg, s) for im, s in zip(images, seeds, strict=True)]
            )
        elif method == "tent":
            logits = tent_step(model, opt, to_input(images))
        else:
            with torch.no_grad():
                logits = model(to_input(images), mode="tensor")
        logits_of.update(zip(batch, logits.float().cpu(), strict=True))
    return torch.stack([logits_of[i] for i in range(n)]) if n else torch.zeros(0, 0)


def cost_estimate(cfg: TTAConfig, images: int) -> str:
    """What the methods cost, in forward and backward passes of the classifier, before they run."""
    parts = []
    for m in cfg.methods:
        if m == "memo":
            parts.append(
                f"memo: {images} images x ({cfg.memo_views} views x {cfg.memo_steps} step(s) forward + backward, "
                f"+1 forward) = {images * (cfg.memo_views * cfg.memo_steps + 1):,} image-forwards and "
                f"{images * cfg.memo_views * cfg.memo_steps:,} image-backwards"
            )
        elif m == "tent":
            parts.append(f"tent: {images:,} image-forwards and -backwards")
        else:
            parts.append(f"norm: {images:,} image-forwards")
    return "; ".join(parts)
