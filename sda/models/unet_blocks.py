"""Building blocks of the ADM UNet (guided-diffusion, Dhariwal & Nichol 2021).

Parameter names and shapes follow the released checkpoints exactly (``in_layers.0``,
``emb_layers.1``, ``out_layers.3``, ``qkv``, ``proj_out``, ``op``, ``conv``, ...), so the official
``.pt`` files load with ``strict=True``. The computation is written for speed: attention runs
through ``scaled_dot_product_attention`` on a token-major layout (a view for channels_last
activations), and nothing in a forward pass waits on the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as _torch_checkpoint

GROUPS = 32  # GroupNorm groups everywhere in ADM
MAX_PERIOD = 10000  # timestep embedding: lowest frequency is 1 / MAX_PERIOD


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back to the input dtype (fp16/bf16 safe)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> GroupNorm32:
    return GroupNorm32(GROUPS, channels)


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """A 1-, 2- or 3-D convolution."""
    convs = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
    if dims not in convs:
        raise ValueError(f"unsupported dims {dims}: use 1, 2 or 3")
    return convs[dims](*args, **kwargs)


def avg_pool_nd(dims: int, *args, **kwargs) -> nn.Module:
    """A 1-, 2- or 3-D average pooling."""
    pools = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
    if dims not in pools:
        raise ValueError(f"unsupported dims {dims}: use 1, 2 or 3")
    return pools[dims](*args, **kwargs)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero the parameters of ``module`` (output layers start as the identity residual)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = MAX_PERIOD) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, ``[cos | sin]`` as in ADM.

    :param timesteps: (N,) tensor of timesteps.
    :param dim: embedding width; an odd width gets a zero last column.
    :return: (N, dim) float32 tensor.
    """
    half = dim // 2
    # Built on the timesteps' device: no host-to-device copy inside the forward pass.
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )  # (half,)
    args = timesteps[:, None].float() * freqs[None]  # (N, half)
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (N, 2 * half)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)  # (N, dim)
    return embedding


def maybe_checkpoint(fn: Callable, *args: torch.Tensor, enabled: bool) -> torch.Tensor:
    """Gradient checkpointing (non-reentrant) when enabled and gradients are being recorded."""
    if enabled and torch.is_grad_enabled():
        return _torch_checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class TimestepBlock(nn.Module):
    """A module whose forward takes the timestep embedding as a second argument."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    """A sequence that passes ``emb`` to the children that take it."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


def _upsample_nearest(x: torch.Tensor, dims: int) -> torch.Tensor:
    """Nearest 2x upsampling; for 3-D signals only the inner two dimensions."""
    if dims == 3:
        return F.interpolate(x, (x.shape[2], x.shape[3] * 2, x.shape[4] * 2), mode="nearest")
    return F.interpolate(x, scale_factor=2, mode="nearest")


class _Resample(nn.Module):
    """What Upsample and Downsample share: channels in and out, whether a convolution is used, the dims."""

    def __init__(self, channels: int, use_conv: bool, dims: int = 2, out_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.dims = dims


class Upsample(_Resample):
    """Nearest 2x upsampling, optionally followed by a 3x3 convolution (parameter ``conv``)."""

    def __init__(self, channels: int, use_conv: bool, dims: int = 2, out_channels: int | None = None):
        super().__init__(channels, use_conv, dims, out_channels)
        if use_conv:
            self.conv = conv_nd(dims, channels, self.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _upsample_nearest(x, self.dims)  # (N, C, 2H, 2W)
        return self.conv(x) if self.use_conv else x


class Downsample(_Resample):
    """2x downsampling by a strided 3x3 convolution or average pooling (parameter ``op``)."""

    def __init__(self, channels: int, use_conv: bool, dims: int = 2, out_channels: int | None = None):
        super().__init__(channels, use_conv, dims, out_channels)
        stride = (1, 2, 2) if dims == 3 else 2
        if use_conv:
            self.op = conv_nd(dims, channels, self.out_channels, 3, stride=stride, padding=1)
        else:
            if self.channels != self.out_channels:
                raise ValueError("Downsample without a convolution cannot change the channel count")
            self.op = avg_pool_nd(dims, kernel_size=stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)  # (N, C', H/2, W/2)


class ResBlock(TimestepBlock):
    """Residual block conditioned on the timestep embedding; may resample or change channels.

    :param use_conv: with a channel change, use a 3x3 instead of a 1x1 skip convolution.
    :param use_scale_shift_norm: FiLM conditioning ``norm(h) * (1 + scale) + shift``.
    :param up: / :param down: resample inside the block (``resblock_updown``).
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_conv: bool = False,
        use_scale_shift_norm: bool = False,
        dims: int = 2,
        use_checkpoint: bool = False,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__()
        self.channels = channels
        self.emb_channels = emb_channels
        self.dropout = dropout
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.use_checkpoint = use_checkpoint
        self.use_scale_shift_norm = use_scale_shift_norm
        self.dims = dims

        self.in_layers = nn.Sequential(
            normalization(channels),
            nn.SiLU(),
            conv_nd(dims, channels, self.out_channels, 3, padding=1),
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False, dims), Upsample(channels, False, dims)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False, dims), Downsample(channels, False, dims)
        else:
            self.h_upd = self.x_upd = nn.Identity()

        emb_out = 2 * self.out_channels if use_scale_shift_norm else self.out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(
            normalization(self.out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(conv_nd(dims, self.out_channels, self.out_channels, 3, padding=1)),
        )
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 3, padding=1)
        else:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """:param x: (N, C, *spatial); :param emb: (N, emb_channels) -> (N, C_out, *spatial')."""
        return maybe_checkpoint(self._forward, x, emb, enabled=self.use_checkpoint)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            # Resample between the activation and the convolution, as ADM does.
            h = self.in_layers[1](self.in_layers[0](x))  # (N, C, H, W)
            h = self.in_layers[2](self.h_upd(h))  # (N, C_out, H', W')
            x = self.x_upd(x)  # (N, C, H', W')
        else:
            h = self.in_layers(x)  # (N, C_out, H, W)
        emb_out = self.emb_layers(emb).type(h.dtype)  # (N, C_out or 2 C_out)
        emb_out = emb_out.reshape(*emb_out.shape, *([1] * (h.ndim - 2)))  # (N, C_out*, 1, 1)
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)  # (N, C_out, 1, 1) each
            h = self.out_layers[0](h) * (1 + scale) + shift  # (N, C_out, H', W')
            for layer in self.out_layers[1:]:
                h = layer(h)
        else:
            h = self.out_layers(h + emb_out)  # (N, C_out, H', W')
        return self.skip_connection(x) + h


def _sdpa_heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(N, H, T, C) each -> (N, T, H * C). SDPA's 1/sqrt(C) equals ADM's (1/C**0.25)**2 on q and k."""
    n, heads, length, ch = q.shape
    a = F.scaled_dot_product_attention(q, k, v)  # (N, H, T, C)
    return a.transpose(1, 2).reshape(n, length, heads * ch)  # (N, T, H * C)


class QKVAttentionLegacy(nn.Module):
    """Attention whose channel axis is split into heads first, then into q, k, v (ADM's old order).

    Token-major layout: ``qkv`` is (N, T, H * 3 * C), i.e. the transpose of guided-diffusion's
    (N, H * 3 * C, T); the output is (N, T, H * C).
    """

    heads_first = True

    def __init__(self, n_heads: int):
        super().__init__()
        self.n_heads = n_heads

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        n, length, width = qkv.shape
        ch = width // (3 * self.n_heads)
        if self.heads_first:
            qkv = qkv.reshape(n, length, self.n_heads, 3, ch).permute(3, 0, 2, 1, 4)  # (3, N, H, T, C)
        else:
            qkv = qkv.reshape(n, length, 3, self.n_heads, ch).permute(2, 0, 3, 1, 4)  # (3, N, H, T, C)
        return _sdpa_heads(qkv[0], qkv[1], qkv[2])  # (N, T, H * C)


class QKVAttention(QKVAttentionLegacy):
    """Attention whose channel axis is split into q, k, v first, then into heads (ADM's new order).

    Token-major layout: ``qkv`` is (N, T, 3 * H * C); the output is (N, T, H * C).
    """

    heads_first = False


class AttentionBlock(nn.Module):
    """Self-attention over all spatial positions, residual, with 1x1 ``qkv`` / ``proj_out`` (Conv1d).

    The 1x1 convolutions run as linear layers on tokens (same weights, same math), so a
    channels_last activation is attended without any layout copy.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_checkpoint: bool = False,
        use_new_attention_order: bool = False,
    ):
        super().__init__()
        self.channels = channels
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels != 0:
                raise ValueError(f"channels {channels} not divisible by num_head_channels {num_head_channels}")
            self.num_heads = channels // num_head_channels
        if channels % self.num_heads != 0:
            raise ValueError(f"channels {channels} not divisible by num_heads {self.num_heads}")
        self.use_checkpoint = use_checkpoint
        self.norm = normalization(channels)
        self.qkv = conv_nd(1, channels, channels * 3, 1)
        attention = QKVAttention if use_new_attention_order else QKVAttentionLegacy
        self.attention = attention(self.num_heads)
        self.proj_out = zero_module(conv_nd(1, channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:param x: (N, C, *spatial) -> (N, C, *spatial)."""
        return maybe_checkpoint(self._forward, x, enabled=self.use_checkpoint)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, *spatial = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)  # (N, T, C); a view for channels_last x
        qkv = F.linear(h, self.qkv.weight[..., 0], self.qkv.bias)  # (N, T, 3C)
        h = self.attention(qkv)  # (N, T, C)
        h = F.linear(h, self.proj_out.weight[..., 0], self.proj_out.bias)  # (N, T, C)
        return x + h.transpose(1, 2).reshape(n, c, *spatial)  # (N, C, *spatial)
