"""ADM UNet (guided-diffusion's ``UNetModel``): the network only; its flags live in ``sda.models.adm_flags``.

The state-dict keys and shapes equal those of the released guided-diffusion checkpoints, e.g.
``256x256_diffusion_uncond.pt`` (552,814,086 parameters) loads with ``strict=True``::

    from sda.models.adm_flags import ADM_FLAGS, create_model, load_adm_checkpoint, model_kwargs

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

from collections.abc import Iterable

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
