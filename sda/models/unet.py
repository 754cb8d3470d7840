"""ADM UNet (guided-diffusion's ``UNetModel``), its factory, flag sets and checkpoint loader.

The state-dict keys and shapes equal those of the released guided-diffusion checkpoints, e.g.
``256x256_diffusion_uncond.pt`` (552,814,086 parameters) loads with ``strict=True``::

    model = create_model(**model_kwargs(ADM_FLAGS["256_uncond"]))
    load_adm_checkpoint(model, "pretrained_ckpt/256x256_diffusion_uncond.pt")
    model.convert_to_fp16()  # as the reference does when use_fp16 is True
    eps_and_var = model(x, t)  # (N, 6, 256, 256)

Half precision follows the reference: ``convert_to_fp16()`` turns the convolutions of the torso
(input, middle and output blocks) to float16 and the forward pass runs the torso in
``self.dtype``; the embeddings, norms and output head stay float32. For bfloat16, leave the model
in float32 and call it under ``torch.autocast``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn as nn

from sda.models.unet_blocks import (
    AttentionBlock,
    Downsample,
    ResBlock,
    TimestepEmbedSequential,
    Upsample,
    conv_nd,
    normalization,
    timestep_embedding,
    zero_module,
)
from sda.utils.errors import UserError

NUM_CLASSES = 1000  # ImageNet classes of the class-conditional ADM checkpoints

# channel_mult used when the flag is "" (the reference's per-size defaults; 32 is ours).
DEFAULT_CHANNEL_MULT: dict[int, tuple[float, ...]] = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
    32: (1, 2, 2, 2),
}

# Flags of the released checkpoints (guided-diffusion README, MODEL_FLAGS). They include the
# diffusion flags; ``model_kwargs(flags)`` keeps the ones ``create_model`` takes.
ADM_256_UNCOND_FLAGS: dict[str, Any] = dict(
    attention_resolutions="32,16,8",
    class_cond=False,
    diffusion_steps=1000,
    image_size=256,
    learn_sigma=True,
    noise_schedule="linear",
    num_channels=256,
    num_head_channels=64,
    num_res_blocks=2,
    resblock_updown=True,
    use_fp16=True,
    use_scale_shift_norm=True,
)
ADM_FLAGS: dict[str, dict[str, Any]] = {
    "256_uncond": ADM_256_UNCOND_FLAGS,
    "64_cond": dict(
        attention_resolutions="32,16,8",
        class_cond=True,
        diffusion_steps=1000,
        dropout=0.1,
        image_size=64,
        learn_sigma=True,
        noise_schedule="cosine",
        num_channels=192,
        num_head_channels=64,
        num_res_blocks=3,
        resblock_updown=True,
        use_new_attention_order=True,
        use_fp16=True,
        use_scale_shift_norm=True,
    ),
    "128_cond": dict(
        attention_resolutions="32,16,8",
        class_cond=True,
        diffusion_steps=1000,
        image_size=128,
        learn_sigma=True,
        noise_schedule="linear",
        num_channels=256,
        num_heads=4,
        num_res_blocks=2,
        resblock_updown=True,
        use_fp16=True,
        use_scale_shift_norm=True,
    ),
    "256_cond": {**ADM_256_UNCOND_FLAGS, "class_cond": True},
    "512_cond": dict(
        attention_resolutions="32,16,8",
        class_cond=True,
        diffusion_steps=1000,
        image_size=512,
        learn_sigma=True,
        noise_schedule="linear",
        num_channels=256,
        num_head_channels=64,
        num_res_blocks=2,
        resblock_updown=True,
        use_fp16=False,
        use_scale_shift_norm=True,
    ),
}


class UNetModel(nn.Module):
    """The ADM UNet with attention and timestep (and optional class) embedding.

    :param attention_resolutions: downsample rates (1, 2, 4, ...) at which attention is used.
    :param channel_mult: channel multiplier per level (one level per resolution).
    :param num_classes: class-conditional with this many classes when not None.
    :param use_checkpoint: gradient checkpointing of every block when gradients are recorded.
    :param use_fp16: run the torso in float16 (after ``convert_to_fp16()``).
    :param num_head_channels: fixed width per head; overrides ``num_heads`` when not -1.
    :param num_heads_upsample: heads in the decoder (-1: same as ``num_heads``). Deprecated upstream.
    :param use_scale_shift_norm: FiLM-like conditioning in the residual blocks.
    :param resblock_updown: residual blocks instead of plain layers for down/upsampling.
    :param use_new_attention_order: split q/k/v before heads (``QKVAttention``).
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        model_channels: int,
        out_channels: int,
        num_res_blocks: int,
        attention_resolutions: Iterable[int],
        dropout: float = 0,
        channel_mult: tuple[float, ...] = (1, 2, 4, 8),
        conv_resample: bool = True,
        dims: int = 2,
        num_classes: int | None = None,
        use_checkpoint: bool = False,
        use_fp16: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
    ):
        super().__init__()
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        attention_resolutions = tuple(attention_resolutions)
        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_res_blocks = num_res_blocks
        self.attention_resolutions = attention_resolutions
        self.dropout = dropout
        self.channel_mult = channel_mult
        self.conv_resample = conv_resample
        self.num_classes = num_classes
        self.use_checkpoint = use_checkpoint
        self.dtype = torch.float16 if use_fp16 else torch.float32
        self.num_heads = num_heads
        self.num_head_channels = num_head_channels
        self.num_heads_upsample = num_heads_upsample

        time_embed_dim = model_channels * 4
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, time_embed_dim),
            nn.SiLU(),
            nn.Linear(time_embed_dim, time_embed_dim),
        )
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, time_embed_dim)

        def res_block(ch_in: int, ch_out: int, up: bool = False, down: bool = False) -> ResBlock:
            return ResBlock(
                ch_in,
                time_embed_dim,
                dropout,
                out_channels=ch_out,
                dims=dims,
                use_checkpoint=use_checkpoint,
                use_scale_shift_norm=use_scale_shift_norm,
                up=up,
                down=down,
            )

        def attention(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(
                ch,
                num_heads=heads,
                num_head_channels=num_head_channels,
                use_checkpoint=use_checkpoint,
                use_new_attention_order=use_new_attention_order,
            )

        # Encoder: per level num_res_blocks blocks, then a 2x downsample except at the last level.
        ch = input_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(conv_nd(dims, in_channels, ch, 3, padding=1))])
        skip_chans = [ch]
        ds = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res_block(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_resolutions:
                    layers.append(attention(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(channel_mult) - 1:
                down = (
                    res_block(ch, ch, down=True)
                    if resblock_updown
                    else Downsample(ch, conv_resample, dims=dims, out_channels=ch)
                )
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(res_block(ch, ch), attention(ch, num_heads), res_block(ch, ch))

        # Decoder: per level num_res_blocks + 1 blocks, each eating one skip; 2x upsample at the end.
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [res_block(ch + skip_chans.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_resolutions:
                    layers.append(attention(ch, num_heads_upsample))
                if level and i == num_res_blocks:
                    layers.append(
                        res_block(ch, ch, up=True)
                        if resblock_updown
                        else Upsample(ch, conv_resample, dims=dims, out_channels=ch)
                    )
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            normalization(ch),
            nn.SiLU(),
            zero_module(conv_nd(dims, input_ch, out_channels, 3, padding=1)),
        )

    def _torso(self) -> tuple[nn.Module, ...]:
        return (self.input_blocks, self.middle_block, self.output_blocks)

    def convert_to_fp16(self) -> None:
        """Convert the convolutions of the torso to float16 (norms and linears stay float32)."""
        _convert_convs(self._torso(), torch.float16)
        self.dtype = torch.float16

    def convert_to_fp32(self) -> None:
        """Undo ``convert_to_fp16()``."""
        _convert_convs(self._torso(), torch.float32)
        self.dtype = torch.float32

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Predict from a noisy batch.

        :param x: (N, in_channels, H, W) inputs.
        :param timesteps: (N,) timesteps (the original, un-respaced step values).
        :param y: (N,) class labels iff the model is class-conditional.
        :return: (N, out_channels, H, W) outputs (dtype of x, or the autocast dtype under autocast).
        """
        if (y is not None) != (self.num_classes is not None):
            raise ValueError("pass y if and only if the model is class-conditional")
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(x.shape[0])  # (N,)
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))  # (N, 4 * model_channels)
        if self.num_classes is not None:
            emb = emb + self.label_emb(y)  # (N, 4 * model_channels)

        skips = []
        h = x.type(self.dtype)  # (N, C_in, H, W)
        for module in self.input_blocks:
            h = module(h, emb)  # (N, C_l, H_l, W_l)
            skips.append(h)
        h = self.middle_block(h, emb)  # (N, C_mid, H_min, W_min)
        for module in self.output_blocks:
            h = module(torch.cat([h, skips.pop()], dim=1), emb)  # (N, C_l, H_l, W_l)
        return self.out(h.type(x.dtype))  # (N, out_channels, H, W)


def _convert_convs(modules: Iterable[nn.Module], dtype: torch.dtype) -> None:
    """Cast the weights and biases of every convolution in ``modules`` (in place)."""
    for root in modules:
        for m in root.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                m.weight.data = m.weight.data.to(dtype)
                if m.bias is not None:
                    m.bias.data = m.bias.data.to(dtype)


def parse_channel_mult(channel_mult: str | Iterable[float], image_size: int) -> tuple[float, ...]:
    """``""`` -> the default for ``image_size``; ``"1,2,2"`` (or a sequence) -> (1, 2, 2)."""
    if isinstance(channel_mult, str):
        if channel_mult.strip() == "":
            if image_size not in DEFAULT_CHANNEL_MULT:
                sizes = ", ".join(str(s) for s in sorted(DEFAULT_CHANNEL_MULT))
                raise UserError(
                    f"no default channel_mult for image_size {image_size} (defaults exist for {sizes}); "
                    "pass --channel_mult, e.g. 1,2"
                )
            return DEFAULT_CHANNEL_MULT[image_size]
        try:
            values = [float(v) for v in channel_mult.split(",")]
        except ValueError:
            raise UserError(f"bad channel_mult {channel_mult!r}: use comma-separated numbers, e.g. 1,2,2") from None
    else:
        values = [float(v) for v in channel_mult]
    return tuple(int(v) if v.is_integer() else v for v in values)


def parse_attention_resolutions(attention_resolutions: str | Iterable[int], image_size: int) -> tuple[int, ...]:
    """Resolutions ("32,16,8") -> downsample rates ``image_size // res`` (e.g. 8, 16, 32 at 256)."""
    if isinstance(attention_resolutions, str):
        try:
            res = [int(r) for r in attention_resolutions.split(",") if r.strip()]
        except ValueError:
            raise UserError(
                f"bad attention_resolutions {attention_resolutions!r}: use comma-separated integers, e.g. 32,16,8"
            ) from None
    else:
        res = [int(r) for r in attention_resolutions]
    return tuple(image_size // r for r in res)


def create_model(
    image_size: int,
    num_channels: int,
    num_res_blocks: int,
    channel_mult: str | Iterable[float] = "",
    learn_sigma: bool = False,
    class_cond: bool = False,
    use_checkpoint: bool = False,
    attention_resolutions: str | Iterable[int] = "16",
    num_heads: int = 1,
    num_head_channels: int = -1,
    num_heads_upsample: int = -1,
    use_scale_shift_norm: bool = False,
    dropout: float = 0,
    resblock_updown: bool = False,
    use_fp16: bool = False,
    use_new_attention_order: bool = False,
    in_channels: int = 3,
    num_classes: int = NUM_CLASSES,
) -> UNetModel:
    """Build a ``UNetModel`` from the reference's command-line flags (guided-diffusion's create_model).

    As in the reference, ``use_fp16`` only sets the compute dtype; call ``convert_to_fp16()``.
    """
    return UNetModel(
        image_size=image_size,
        in_channels=in_channels,
        model_channels=num_channels,
        out_channels=in_channels * (2 if learn_sigma else 1),
        num_res_blocks=num_res_blocks,
        attention_resolutions=parse_attention_resolutions(attention_resolutions, image_size),
        dropout=dropout,
        channel_mult=parse_channel_mult(channel_mult, image_size),
        num_classes=num_classes if class_cond else None,
        use_checkpoint=use_checkpoint,
        use_fp16=use_fp16,
        num_heads=num_heads,
        num_head_channels=num_head_channels,
        num_heads_upsample=num_heads_upsample,
        use_scale_shift_norm=use_scale_shift_norm,
        resblock_updown=resblock_updown,
        use_new_attention_order=use_new_attention_order,
    )


# The model flags of the reference scripts and their defaults (guided-diffusion's
# model_and_diffusion_defaults, restricted to the model; learn_sigma is shared with the diffusion).
MODEL_FLAG_DEFAULTS: dict[str, Any] = dict(
    image_size=64,
    num_channels=128,
    num_res_blocks=2,
    channel_mult="",
    learn_sigma=False,
    class_cond=False,
    use_checkpoint=False,
    attention_resolutions="16,8",
    num_heads=4,
    num_head_channels=-1,
    num_heads_upsample=-1,
    use_scale_shift_norm=True,
    dropout=0.0,
    resblock_updown=False,
    use_fp16=False,
    use_new_attention_order=False,
)


def model_kwargs(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a flag dict (e.g. ``ADM_FLAGS["256_uncond"]``) that ``create_model`` takes."""
    keys = (*MODEL_FLAG_DEFAULTS, "in_channels", "num_classes")
    return {k: flags[k] for k in keys if k in flags}


def str2bool(v: str | bool) -> bool:
    """Parse "True"/"False" (also yes/no, t/f, y/n, 1/0) as the reference scripts do."""
    if isinstance(v, bool):
        return v
    if v.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if v.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"boolean value expected, got {v!r} (use True or False)")


def add_model_args(parser: argparse.ArgumentParser, defaults: Mapping[str, Any] | None = None) -> None:
    """Add the reference's model flags (``--image_size``, ``--use_fp16 True``, ...) to ``parser``.

    :param defaults: flag values to default to; None -> the 256x256 unconditional model that SDA
        uses, other flags at the reference's defaults.
    """
    values = {**MODEL_FLAG_DEFAULTS, **model_kwargs(ADM_256_UNCOND_FLAGS if defaults is None else defaults)}
    for name, default in MODEL_FLAG_DEFAULTS.items():
        kind = str2bool if isinstance(default, bool) else type(default)
        parser.add_argument(f"--{name}", default=values[name], type=kind)


def model_kwargs_from_args(args: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    """The ``create_model`` keyword arguments from parsed flags (a Namespace or a dict)."""
    return model_kwargs(vars(args) if isinstance(args, argparse.Namespace) else args)


def load_adm_checkpoint(model: UNetModel, path: str | os.PathLike, allow_pickle: bool = False) -> UNetModel:
    """Load a guided-diffusion checkpoint (a plain state dict) into ``model`` strictly.

    Raises UserError for a missing file, an unsafe pickle (unless ``allow_pickle``) or a key/shape
    mismatch (the message names the file and the missing/unexpected keys). Returns ``model``.
    """
    from sda.utils.checkpoint import extract_state_dict, load_state_dict_strict, safe_load

    obj = safe_load(path, allow_pickle=allow_pickle)
    load_state_dict_strict(model, extract_state_dict(obj), what=str(path))
    return model
