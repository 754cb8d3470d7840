"""ADM's flags, kept apart from the network as guided-diffusion keeps them in ``script_util.py``.

The flag sets of the released checkpoints (``ADM_FLAGS``), the reference scripts' model flags and their
defaults (``MODEL_FLAG_DEFAULTS``, ``add_model_args``), ``create_model`` (flags -> ``UNetModel``) and the
strict checkpoint loader. The diffusion half of the reference's flags lives in ``sda.diffusion.flags``.
This is the user-facing side of the model, so a bad flag value is a :class:`UserError` naming the flag.
"""

from __future__ import annotations

import argparse
import inspect
import os
from collections.abc import Iterable, Mapping
from typing import Any

from sda.diffusion.flags import DIFFUSION_FLAG_DEFAULTS
from sda.models.unet import UNetModel
from sda.utils.cli import add_flag_table
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
# diffusion flags; ``model_kwargs(flags)`` keeps the ones ``create_model`` takes. Every released model shares
# the flags of _RELEASED; each entry adds its own.
_RELEASED: dict[str, Any] = dict(
    attention_resolutions="32,16,8",
    diffusion_steps=1000,
    learn_sigma=True,
    resblock_updown=True,
    use_scale_shift_norm=True,
)
ADM_256_UNCOND_FLAGS: dict[str, Any] = {
    **_RELEASED,
    **dict(class_cond=False, image_size=256, noise_schedule="linear", num_channels=256, num_head_channels=64),
    **dict(num_res_blocks=2, use_fp16=True),
}
ADM_FLAGS: dict[str, dict[str, Any]] = {
    "256_uncond": ADM_256_UNCOND_FLAGS,
    "64_cond": {
        **_RELEASED,
        **dict(class_cond=True, dropout=0.1, image_size=64, noise_schedule="cosine", num_channels=192),
        **dict(num_head_channels=64, num_res_blocks=3, use_new_attention_order=True, use_fp16=True),
    },
    "128_cond": {
        **_RELEASED,
        **dict(class_cond=True, image_size=128, noise_schedule="linear", num_channels=256, num_heads=4),
        **dict(num_res_blocks=2, use_fp16=True),
    },
    "256_cond": {**ADM_256_UNCOND_FLAGS, "class_cond": True},
    "512_cond": {
        **_RELEASED,
        **dict(class_cond=True, image_size=512, noise_schedule="linear", num_channels=256, num_head_channels=64),
        **dict(num_res_blocks=2, use_fp16=False),
    },
}


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


UNET_ARGS = frozenset(inspect.signature(UNetModel).parameters)


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

    As in the reference, ``use_fp16`` only sets the compute dtype; call ``convert_to_fp16()``. Flags named like a
    ``UNetModel`` argument pass through unchanged; the others are renamed or parsed here.
    """
    flags = dict(locals())  # the flags above, by name
    changed = dict(
        model_channels=num_channels,
        out_channels=in_channels * (2 if learn_sigma else 1),
        attention_resolutions=parse_attention_resolutions(attention_resolutions, image_size),
        channel_mult=parse_channel_mult(channel_mult, image_size),
        num_classes=num_classes if class_cond else None,
    )
    same = {k: v for k, v in flags.items() if k in UNET_ARGS and k not in changed}
    return UNetModel(**same, **changed)


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


# Every flag that describes an ADM and its diffusion (what a model config file holds besides training settings).
ADM_FLAG_KEYS: tuple[str, ...] = (*MODEL_FLAG_DEFAULTS, *DIFFUSION_FLAG_DEFAULTS)


def complete_flags(flags: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every model and diffusion flag (``ADM_FLAG_KEYS``), as a command line with ``add_model_args(defaults)``
    and ``add_diffusion_args`` parses them: ``flags``, else ``defaults`` (None: the 256x256 unconditional
    model), else the reference's defaults. What a config built in code holds, equal to the parsed one."""
    base = {**MODEL_FLAG_DEFAULTS, **model_kwargs(ADM_256_UNCOND_FLAGS if defaults is None else defaults)}
    base.update({k: (defaults or {}).get(k, v) for k, v in DIFFUSION_FLAG_DEFAULTS.items()})
    return {k: flags.get(k, base[k]) for k in ADM_FLAG_KEYS}


def flags_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """The model and diffusion flags of a model config (a JSON dict of flags plus training settings)."""
    return {k: config[k] for k in ADM_FLAG_KEYS if k in config}


def add_model_args(
    parser: argparse.ArgumentParser, defaults: Mapping[str, Any] | None = None, skip: Iterable[str] = ()
) -> None:
    """Add the reference's model flags (``--image_size``, ``--use_fp16 True``, ...) but ``skip`` to ``parser``.

    :param defaults: flag values to default to; None -> the 256x256 unconditional model that SDA
        uses, other flags at the reference's defaults.
    """
    defaults = model_kwargs(ADM_256_UNCOND_FLAGS if defaults is None else defaults)
    add_flag_table(parser, MODEL_FLAG_DEFAULTS, defaults, skip)


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
