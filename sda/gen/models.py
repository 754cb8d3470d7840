"""Stage 1 (gen) models: DiT or a class-conditional ADM from a checkpoint, and the VAE, loaded strictly and safely."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from sda.models.dit import build_dit
from sda.utils.checkpoint import extract_state_dict, load_state_dict_strict, safe_load
from sda.utils.errors import UserError

VAE_SCALE = 0.18215  # latent scale of the Stable Diffusion VAE (DiT decodes vae.decode(z / VAE_SCALE))
# The layout of stabilityai/sd-vae-ft-ema / -mse (the diffusers AutoencoderKL config of the released files).
SD_VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    norm_num_groups=32,
    sample_size=256,
)


def load_dit(
    name: str,
    ckpt: str | os.PathLike,
    *,
    input_size: int,
    num_classes: int,
    in_channels: int,
    learn_sigma: bool = True,
    allow_pickle: bool = False,
) -> nn.Module:
    """A DiT with the weights of ``ckpt`` (a plain state dict or a training dict; "ema" preferred), strictly.

    A label table of exactly ``num_classes`` rows means the model was trained without label dropout.
    """
    sd = extract_state_dict(safe_load(ckpt, allow_pickle=allow_pickle))
    table = sd.get("y_embedder.embedding_table.weight")
    dropout = 0.0 if table is not None and table.shape[0] == num_classes else 0.1
    try:
        model = build_dit(
            name,
            input_size=input_size,
            num_classes=num_classes,
            in_channels=in_channels,
            learn_sigma=learn_sigma,
            class_dropout_prob=dropout,
        )
    except ValueError as e:
        raise UserError(f"--model {name}: {e}") from None
    load_state_dict_strict(model, sd, what=f"checkpoint {ckpt}")
    return model.eval()


def load_adm(
    flags: dict[str, Any], ckpt: str | os.PathLike, *, num_classes: int, allow_pickle: bool = False
) -> nn.Module:
    """A class-conditional guided-diffusion UNet from its flags and checkpoint (fp16 torso if use_fp16).

    A label table of ``num_classes + 1`` rows holds a null class (index ``num_classes``; trained with
    ``gen/train.py --class_dropout``): the model then serves classifier-free guidance.
    """
    from sda.models.adm_flags import create_model, model_kwargs

    sd = extract_state_dict(safe_load(ckpt, allow_pickle=allow_pickle))
    table = sd.get("label_emb.weight")
    rows = num_classes + 1 if table is not None and table.shape[0] == num_classes + 1 else num_classes
    model = create_model(**{**model_kwargs(flags), "num_classes": rows})
    load_state_dict_strict(model, sd, what=str(ckpt))
    if flags.get("use_fp16"):
        model.convert_to_fp16()  # as the reference does
    return model.eval()


def has_null_class(model: nn.Module, num_classes: int) -> bool:
    """Whether a gen model can do classifier-free guidance: a DiT trained with label dropout, or an ADM whose
    label table has the extra null row."""
    if hasattr(model, "y_embedder"):
        return model.y_embedder.dropout_prob > 0
    table = getattr(model, "label_emb", None)
    return table is not None and table.num_embeddings == num_classes + 1


def load_vae(path: str | os.PathLike, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """A diffusers AutoencoderKL from a local folder (or single file), never fetched from the network."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise UserError(
            f"VAE {path} not found; get it with scripts/download_ckpt.sh or download the Hugging Face repo "
            "stabilityai/sd-vae-ft-ema (or -mse) into that folder, or pass --vae-path"
        )
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is fetched at run time
    from diffusers.models import AutoencoderKL

    try:
        if path.is_dir():
            vae = AutoencoderKL.from_pretrained(path, local_files_only=True)
        else:
            vae = AutoencoderKL.from_single_file(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(
            f"cannot load the VAE from {path} ({type(e).__name__}); "
            "pass a diffusers AutoencoderKL folder (config.json + weights)"
        ) from e
    return vae.to(device=device, dtype=dtype).eval()
