"""DDA's low-pass filter LPF: resize-right's cubic, antialiased downsample by D, then cubic upsample by D.

Both resizes are linear and separable, so :class:`LowPass` precomputes them once as one (H, H) and one
(W, W) matrix taken from resize-right itself and applies them as two batched matmuls on the device;
:func:`lowpass_resize_right` is the reference's per-call resize-right path.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

LowPassFn = Callable[[torch.Tensor], torch.Tensor]
LOWPASS_KINDS = ("matrix", "resize_right")


def lowpass_resize_right(x: torch.Tensor, D: int) -> torch.Tensor:
    """The reference's LPF: resize-right cubic antialiased down by D, then cubic up by D (N, C, H, W)."""
    from resize_right import resize

    n, c, h, w = x.shape
    small = resize(x, scale_factors=1.0 / D, out_shape=(n, c, h // D, w // D))  # (N, C, H/D, W/D)
    return resize(small, scale_factors=D, out_shape=(n, c, h, w))  # (N, C, H, W)


def _resize_matrix(n_in: int, factor: float, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float64 matrix of resize-right's 1-D cubic (antialiased) resize by ``factor``.

    Built by resizing the identity with resize-right itself, so the weights are exactly its weights
    (computed in float32 by resize-right, held here in float64).
    """
    from resize_right import resize

    eye = torch.eye(n_in, dtype=torch.float64).reshape(1, 1, n_in, n_in)  # row i = unit impulse at i
    out = resize(eye, scale_factors=[1.0, factor], out_shape=(1, 1, n_in, n_out))  # (1, 1, n_in, n_out)
    return out[0, 0].T.contiguous()  # (n_out, n_in)


def lowpass_matrix(n: int, D: int) -> torch.Tensor:
    """(n, n) float64 matrix of resize-right's down-by-D-then-up-by-D along one axis."""
    down = _resize_matrix(n, 1.0 / D, n // D)  # (n/D, n)
    up = _resize_matrix(n // D, float(D), n)  # (n, n/D)
    return up @ down  # (n, n)


class LowPass:
    """LPF(x) = L_h @ x @ L_w^T with precomputed resize-right matrices, on any device and in autograd.

    Equals :func:`lowpass_resize_right` to float32 rounding (the tests check it).
    """

    def __init__(
        self, height: int, width: int, D: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ):
        # user input is checked by ProjectionConfig (D a power of two) and check_against (D divides the size)
        assert D >= 1 and math.log2(D).is_integer() and height % D == 0 and width % D == 0, (height, width, D)
        self.D = D
        self.shape = (height, width)
        self.left = lowpass_matrix(height, D).to(device=device, dtype=dtype)  # (H, H)
        self.right_t = lowpass_matrix(width, D).T.contiguous().to(device=device, dtype=dtype)  # (W, W)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.shape:
            raise ValueError(f"LowPass built for {self.shape}, got an input of spatial size {tuple(x.shape[-2:])}")
        x = x.to(self.left.dtype)
        return torch.matmul(torch.matmul(self.left, x), self.right_t)  # (N, C, H, W)


def make_lowpass(kind: str, size: int, D: int, device: torch.device | str = "cpu") -> LowPassFn:
    """The LPF of a run: ``matrix`` (precomputed, fast) or ``resize_right`` (per call, as the reference)."""
    if kind == "matrix":
        return LowPass(size, size, D, device)
    if kind == "resize_right":
        return lambda x: lowpass_resize_right(x, D)
    raise ValueError(f"unknown low-pass kind {kind!r}: use one of {LOWPASS_KINDS}")
