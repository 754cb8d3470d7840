"""DiT: the class-conditional diffusion transformer of Peebles & Xie (ICCV 2023).

Written from the paper and the published checkpoints: the parameter names and shapes equal
those of the official ``DiT-XL-2-256x256.pt`` / ``DiT-XL-2-512x512.pt`` files and of DiT
training checkpoints, so they load with ``strict=True``. The layers the official code takes
from timm (``PatchEmbed``, ``Attention``, ``Mlp``) are re-declared here with the same
attribute names, so the model does not depend on timm's changing constructor signatures;
attention is PyTorch's fused ``scaled_dot_product_attention``.

The null ("unconditional") class used by classifier-free guidance is ``num_classes``: the
label table has ``num_classes + 1`` rows when ``class_dropout_prob > 0``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

CfgChannels = Literal["3", "all"]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation of tokens x (N, T, D) by per-sample shift/scale (N, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps t (N,) -> (N, dim), float32.

    The first half holds cos(t * f_k), the second sin(t * f_k), f_k = max_period ** (-k / half).
    """
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=t.device)  # (half,)
    freqs = torch.exp(-math.log(max_period) * k / half)  # (half,)
    args = t[:, None].float() * freqs[None]  # (N, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (N, 2 * half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)  # (N, dim)
    return emb


def sincos_pos_embed_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """Fixed 1-D sin-cos embedding of positions pos (M,) -> (M, dim) in float64: [sin | cos]."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))  # (dim/2,)
    out = pos.reshape(-1).to(torch.float64)[:, None] * omega[None]  # (M, dim/2)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)  # (M, dim)


def sincos_pos_embed_2d(dim: int, grid_size: int) -> torch.Tensor:
    """Fixed 2-D sin-cos embedding of a grid_size x grid_size token grid -> (grid_size**2, dim), float32.

    Tokens are in row-major order; the first dim/2 channels encode the column (x) coordinate
    and the last dim/2 the row (y) coordinate, as in the MAE/DiT checkpoints.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs a dimension divisible by 4, got {dim}")
    coords = torch.arange(grid_size, dtype=torch.float64)
    row, col = torch.meshgrid(coords, coords, indexing="ij")  # (G, G) each
    emb = torch.cat([sincos_pos_embed_1d(dim // 2, col), sincos_pos_embed_1d(dim // 2, row)], dim=1)  # (G*G, dim)
    return emb.float()


class PatchEmbed(nn.Module):
    """Image (N, C, H, W) -> patch tokens (N, T, D) with a strided convolution (key: ``proj``)."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, bias: bool = True):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(
                f"input size {img_size} is not divisible by the patch size {patch_size}; pick another size"
            )
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (N, D, H/p, W/p)
        return x.flatten(2).transpose(1, 2)  # (N, T, D)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (keys: ``qkv``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, N, H, T, Dh)
        q, k, v = qkv.unbind(0)  # (N, H, T, Dh) each
        x = F.scaled_dot_product_attention(q, k, v)  # (N, H, T, Dh)
        x = x.transpose(1, 2).reshape(n, t, d)  # (N, T, D)
        return self.proj(x)  # (N, T, D)


class Mlp(nn.Module):
    """Two-layer MLP with tanh-approximated GELU (keys: ``fc1``, ``fc2``)."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (N, T, D)


class TimestepEmbedder(nn.Module):
    """Diffusion timesteps t (N,) -> conditioning vectors (N, D): sinusoids, then an MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    timestep_embedding = staticmethod(timestep_embedding)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t_freq = timestep_embedding(t, self.frequency_embedding_size)  # (N, F)
        return self.mlp(t_freq.to(self.mlp[0].weight.dtype))  # (N, D)


class LabelEmbedder(nn.Module):
    """Class labels y (N,) -> conditioning vectors (N, D); label dropout for classifier-free guidance.

    Row ``num_classes`` of the table is the null class (present when ``dropout_prob > 0``).
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        use_cfg_embedding = int(dropout_prob > 0)
        self.embedding_table = nn.Embedding(num_classes + use_cfg_embedding, hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def token_drop(
        self, labels: torch.Tensor, force_drop_ids: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Replace dropped labels by the null class (random with ``dropout_prob``, or where force_drop_ids == 1)."""
        if force_drop_ids is None:
            drop = torch.rand(labels.shape[0], generator=generator).to(labels.device) < self.dropout_prob  # (N,)
        else:
            drop = force_drop_ids == 1  # (N,)
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)  # (N,)

    def forward(self, labels: torch.Tensor, train: bool, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        if (train and self.dropout_prob > 0) or force_drop_ids is not None:
            labels = self.token_drop(labels, force_drop_ids)
        return self.embedding_table(labels)  # (N, D)


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning: c sets shift, scale and gate of both branches."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))  # (N, T, D)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))  # (N, T, D)
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated norm, then a linear map from tokens to patches of the output channels."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # (N, D) each
        x = modulate(self.norm_final(x), shift, scale)  # (N, T, D)
        return self.linear(x)  # (N, T, p * p * C_out)


class DiT(nn.Module):
    """Diffusion transformer on (N, C, H, W) latents or images, conditioned on timestep and class.

    Output (N, 2C, H, W) with ``learn_sigma`` (epsilon, then the variance interpolation), else (N, C, H, W).
    """

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        class_dropout_prob: float = 0.1,
        num_classes: int = 1000,
        learn_sigma: bool = True,
    ):
        super().__init__()
        self.input_size = input_size
        self.learn_sigma = learn_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.num_classes = num_classes

        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        # A fixed sin-cos table, stored as a frozen Parameter so it is in the state dict as in the checkpoints.
        self.pos_embed = nn.Parameter(torch.zeros(1, self.x_embedder.num_patches, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio=mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    @property
    def null_class(self) -> int:
        """Label index of the unconditional (dropped) class."""
        return self.num_classes

    def initialize_weights(self) -> None:
        """The DiT recipe's initialisation: xavier linears, N(0, 0.02) embeddings, adaLN-Zero, zero output."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        grid = self.x_embedder.grid_size[0]
        self.pos_embed.data.copy_(sincos_pos_embed_2d(self.pos_embed.shape[-1], grid).unsqueeze(0))
        w = self.x_embedder.proj.weight.data  # the patch conv initialised like a linear layer
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens (N, T, p * p * C) -> images (N, C, H, W)."""
        c, p = self.out_channels, self.patch_size
        h = w = int(round(x.shape[1] ** 0.5))
        if h * w != x.shape[1]:
            raise ValueError(f"{x.shape[1]} tokens do not form a square grid")
        x = x.reshape(x.shape[0], h, w, p, p, c)  # (N, h, w, p, p, C)
        x = torch.einsum("nhwpqc->nchpwq", x)  # (N, C, h, p, w, p)
        return x.reshape(x.shape[0], c, h * p, w * p)  # (N, C, H, W)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (N, C, H, W), t (N,) diffusion timesteps, y (N,) class labels -> (N, C_out, H, W)."""
        x = self.x_embedder(x) + self.pos_embed  # (N, T, D), T = H * W / p ** 2
        t = self.t_embedder(t)  # (N, D)
        y = self.y_embedder(y, self.training)  # (N, D)
        c = t + y  # (N, D)
        for block in self.blocks:
            x = block(x, c)  # (N, T, D)
        x = self.final_layer(x, c)  # (N, T, p * p * C_out)
        return self.unpatchify(x)  # (N, C_out, H, W)

    def forward_with_cfg(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float, cfg_channels: CfgChannels = "3"
    ) -> torch.Tensor:
        """Classifier-free guidance on a doubled batch: x = [x_c; x_u], y = [labels; null class].

        ``cfg_channels="3"`` guides output channels 0-2 only, as the official DiT does (for 4-channel latents
        the 4th epsilon channel stays conditional); ``"all"`` guides every epsilon channel (diffusers). The
        variance channels are never guided. See :func:`forward_with_cfg`.
        """
        return forward_with_cfg(self, x, t, y, cfg_scale, cfg_channels)


def forward_with_cfg(
    model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float, cfg_channels: str = "3"
) -> torch.Tensor:
    """DiT's classifier-free guidance for any class-conditional model ``model(x, t, y)`` (a DiT, or an ADM
    whose label table has a null row) on a doubled batch x = [x_c; x_u], y = [labels; null class].

    Only the first half of x is used (both halves are predicted from it); the guided output channels (0-2
    for ``cfg_channels="3"``, all ``model.in_channels`` for ``"all"``) become ``uncond + cfg_scale * (cond -
    uncond)`` in both halves, the rest stay conditional.
    """
    n_guided = 3 if cfg_channels == "3" else model.in_channels
    half = x[: len(x) // 2]  # (N/2, C, H, W)
    combined = torch.cat([half, half], dim=0)  # (N, C, H, W)
    model_out = model(combined, t, y)  # (N, C_out, H, W)
    eps, rest = model_out[:, :n_guided], model_out[:, n_guided:]  # (N, g, H, W), (N, C_out - g, H, W)
    cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)  # (N/2, g, H, W) each
    half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)  # (N/2, g, H, W)
    eps = torch.cat([half_eps, half_eps], dim=0)  # (N, g, H, W)
    return torch.cat([eps, rest], dim=1)  # (N, C_out, H, W)


def _config(depth: int, hidden_size: int, patch_size: int, num_heads: int) -> Callable[..., DiT]:
    def build(**kwargs) -> DiT:
        return DiT(depth=depth, hidden_size=hidden_size, patch_size=patch_size, num_heads=num_heads, **kwargs)

    return build


# The official sizes: name -> (depth, hidden size, heads); each comes with patches 2, 4 and 8.
DIT_SIZES: dict[str, tuple[int, int, int]] = {
    "XL": (28, 1152, 16),
    "L": (24, 1024, 16),
    "B": (12, 768, 12),
    "S": (12, 384, 6),
}

# User-facing names ("DiT-XL/2", ...) -> constructors taking (input_size, num_classes, in_channels, learn_sigma,
# class_dropout_prob).
DiT_models: dict[str, Callable[..., DiT]] = {
    f"DiT-{size}/{patch}": _config(depth, hidden, patch, heads)
    for size, (depth, hidden, heads) in DIT_SIZES.items()
    for patch in (2, 4, 8)
}


# Small custom sizes (tests, small data sets): "DiT-d<depth>w<width>h<heads>/<patch>", e.g. "DiT-d4w128h4/4".
CUSTOM_NAME = re.compile(r"DiT-d(\d+)w(\d+)h(\d+)/(\d+)")


def is_dit_name(name: str) -> bool:
    return name in DiT_models or CUSTOM_NAME.fullmatch(name) is not None


def build_dit(name: str, **kwargs) -> DiT:
    """``DiT_models[name](**kwargs)``, or a custom size named ``DiT-d<depth>w<width>h<heads>/<patch>``."""
    if name in DiT_models:
        return DiT_models[name](**kwargs)
    m = CUSTOM_NAME.fullmatch(name)
    if m is None:
        raise ValueError(
            f"unknown DiT model {name!r}; choose one of {', '.join(DiT_models)} "
            "or a custom size DiT-d<depth>w<width>h<heads>/<patch>"
        )
    depth, width, heads, patch = (int(v) for v in m.groups())
    if width % 4 or width % heads:
        raise ValueError(f"{name}: the width must be divisible by 4 and by the number of heads")
    return DiT(depth=depth, hidden_size=width, num_heads=heads, patch_size=patch, **kwargs)
