"""MMPreTrain classifiers: configs, official mmcls v0 checkpoints, input normalization, class-folder data.

Stage 3 fine-tunes and Stage 4 evaluates mmpretrain 1.x ``ImageClassifier`` models built from the
configs in ``configs/finetune``. The official ImageNet weights are mmcls 0.x files
(``{"meta": ..., "state_dict": ...}``); :func:`convert_v0_state_dict` renames the few keys that
changed between 0.x and 1.x so they load strictly:

- ResNet-50 and ConvNeXt: no renames (same module names in both versions).
- Swin: the final norm was ``backbone.norm`` (mmcls < 0.16) and is ``backbone.norm3`` now; the
  shifted-window ``attn_mask`` buffers were saved in the old files and are recomputed now. The
  patch-merging layers already used ``nn.Unfold`` order in 0.x, so their weights carry over as is.

Checkpoints load through :func:`sda.utils.checkpoint.safe_load` (no arbitrary pickles unless the
user passes ``--allow-pickle``); ``sda.finetune.checkpoints`` routes mmengine's own loading of local
files (``load_from``, ``--resume``) through it as well. :class:`Normalizer` is the one path from pixels
to a classifier's input.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sda.utils.checkpoint import extract_state_dict, load_state_dict_strict, safe_load
from sda.utils.errors import UserError
from sda.utils.io import class_folders

REPO_ROOT = Path(__file__).resolve().parents[2]
FINETUNE_CONFIG_DIR = REPO_ROOT / "configs" / "finetune"
# Types inside mmengine training checkpoints beyond sda.utils.checkpoint's allow-list:
# MultiStepLR keeps its milestones in a Counter.
_EXTRA_SAFE_GLOBALS: list[Any] = [collections.Counter]


# ---------------------------------------------------------------------------------------------
# configs and models
# ---------------------------------------------------------------------------------------------
def resolve_config_path(config: str | os.PathLike) -> Path:
    """A config file path, or a model name of ``configs/finetune`` ("SwinT" -> SwinT.py)."""
    path = Path(config)
    if path.is_file():
        return path
    named = FINETUNE_CONFIG_DIR / f"{config}.py"
    if named.is_file():
        return named
    names = sorted(p.stem for p in FINETUNE_CONFIG_DIR.glob("[!_]*.py"))
    raise UserError(f"config {config} not found; give a config file or one of {', '.join(names)}")


def load_config(config: Any, cfg_options: Mapping[str, Any] | None = None) -> Any:
    """An mmengine ``Config`` from a path, a model name or a ``Config``; ``cfg_options`` merged in. A config file
    that does not load (a syntax error, an unknown base) is one line naming it."""
    from mmengine.config import Config

    if isinstance(config, Config):
        cfg = config.copy()
    else:
        path = resolve_config_path(config)
        try:
            cfg = Config.fromfile(str(path))
        except (SyntaxError, NameError, ImportError, KeyError, TypeError, ValueError, FileNotFoundError) as e:
            raise UserError(f"config {path} does not load ({type(e).__name__}: {e}); fix the file") from e
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    return cfg


def build_classifier(cfg: Any) -> nn.Module:
    """The config's ``model`` built in mmpretrain's registry scope (constructor initialisation).

    As mmengine's Runner does, the top-level ``data_preprocessor`` (mean/std, RGB order) joins the model.
    """
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    init_default_scope(cfg.get("default_scope", "mmpretrain"))
    model_cfg = cfg.model.copy()
    if cfg.get("data_preprocessor") is not None:
        model_cfg.setdefault("data_preprocessor", cfg.data_preprocessor)
    return MODELS.build(model_cfg)


def head_num_classes(cfg: Any) -> int | None:
    """``model.head.num_classes`` of a classifier config (None when the config has no such head)."""
    head = cfg.model.get("head") or {}
    n = head.get("num_classes")
    return int(n) if n is not None else None


# ---------------------------------------------------------------------------------------------
# mmcls v0 checkpoints
# ---------------------------------------------------------------------------------------------
def detect_arch(sd: Mapping[str, Any]) -> str | None:
    """ "swin", "convnext" or "resnet" from a state dict's key names (None if none of these)."""
    keys = list(sd)
    if any(".attn.w_msa." in k for k in keys):
        return "swin"
    if any(k.startswith(("backbone.downsample_layers.", "downsample_layers.")) for k in keys):
        return "convnext"
    if any(re.match(r"(backbone\.)?layer1\.0\.conv1\.", k) for k in keys):
        return "resnet"
    return None


def convert_v0_state_dict(sd: Mapping[str, torch.Tensor], arch: str | None = None) -> dict[str, torch.Tensor]:
    """Rename mmcls 0.x keys to mmpretrain 1.x ones. Idempotent: 1.x state dicts pass unchanged.

    ``arch``: "resnet", "swin" or "convnext"; None detects it from the key names.
    """
    arch = arch or detect_arch(sd)
    out = dict(sd)
    if arch != "swin":  # ResNet and ConvNeXt kept their module names
        return out
    stages = {int(m.group(1)) for k in out if (m := re.match(r"(?:backbone\.)?stages\.(\d+)\.", k))}
    last = max(stages) if stages else 3
    for k in list(out):
        if k.endswith("attn_mask"):  # recomputed from the window layout in 1.x
            del out[k]
        elif k.startswith(("backbone.norm.", "norm.")):  # the single final norm of mmcls < 0.16
            out[k.replace("norm.", f"norm{last}.", 1)] = out.pop(k)
    return out


def safe_load_classifier(path: str | os.PathLike, allow_pickle: bool = False, map_location: Any = "cpu") -> Any:
    with torch.serialization.safe_globals(_EXTRA_SAFE_GLOBALS):
        return safe_load(path, allow_pickle=allow_pickle, map_location=map_location)


def load_classifier_weights(model: nn.Module, ckpt_path: str | os.PathLike, allow_pickle: bool = False) -> dict:
    """Load an mmcls v0 or mmpretrain 1.x checkpoint into ``model`` strictly; returns its meta.

    A training checkpoint of MMEngine (stock, or the SDA authors' MMPreTrain fork: its message hub and optimizer
    state hold objects outside the allow-list) gives its weights without ``allow_pickle``: they are extracted
    with every other pickled object left inert (``extract_weights``), and its meta is not read."""
    from sda.utils.checkpoint import UnsafePickleError, extract_weights

    try:
        obj = safe_load_classifier(ckpt_path, allow_pickle=allow_pickle)
    except UnsafePickleError:
        obj = {"state_dict": extract_weights(ckpt_path, keys=("state_dict", "model"))}
        print(f"{ckpt_path}: weights read without its other pickled objects (training state)", flush=True)
    sd = convert_v0_state_dict(extract_state_dict(obj, keys=("state_dict", "model")))
    load_state_dict_strict(model, sd, f"checkpoint {ckpt_path}")
    meta = obj.get("meta") if isinstance(obj, Mapping) else None
    return dict(meta) if isinstance(meta, Mapping) else {}


def build_classifier_from_config(
    config: Any,
    ckpt_path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    allow_pickle: bool = False,
    cfg_options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """An eval-mode mmpretrain ``ImageClassifier`` from a config (path, model name or Config).

    With ``ckpt_path`` the weights (official v0 or fine-tuned) load strictly; without it the model
    keeps its constructor's random initialisation. Call it as ``model(x, mode="tensor")`` on
    normalised images for logits, or use :func:`classifier_logits` on raw RGB pixels.
    """
    cfg = load_config(config, cfg_options)
    model = build_classifier(cfg)
    if ckpt_path is not None:
        load_classifier_weights(model, ckpt_path, allow_pickle=allow_pickle)
    return model.to(device).eval()


class Normalizer:
    """The classifier's input normalization (its ``data_preprocessor``): ``(x[, BGR->RGB] - mean) / std``.

    The one path from pixels to the model: eval, BN-adapt and the mini benchmark's gates all use it.
    Pixels from mmcv's ``LoadImageFromFile`` (the configs' test pipelines) are BGR; ``channel_order="rgb"``
    is for pixels already in RGB (PIL), which then skip the flip.
    """

    def __init__(self, mean: Any, std: Any, to_rgb: bool):
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)  # (1, 3, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)  # (1, 3, 1, 1)
        self.to_rgb = to_rgb

    @classmethod
    def from_config(cls, cfg: Any) -> Normalizer:
        dp = (cfg.get("model") or {}).get("data_preprocessor") or cfg.get("data_preprocessor")
        if not dp or dp.get("mean") is None or dp.get("std") is None:
            raise UserError("the config has no data_preprocessor mean/std; use one of configs/eval/*.py")
        return cls(dp["mean"], dp["std"], bool(dp.get("to_rgb", False) or dp.get("bgr_to_rgb", False)))

    @classmethod
    def of_model(cls, model: nn.Module) -> Normalizer:
        pre = model.data_preprocessor
        return cls(pre.mean, pre.std, bool(getattr(pre, "_channel_conversion", False)))

    def __call__(self, x: torch.Tensor, channel_order: str = "bgr") -> torch.Tensor:
        x = x.float()  # (N, 3, H, W)
        if self.to_rgb and channel_order == "bgr":
            x = x.flip(1)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)  # (N, 3, H, W)


def build_pipeline(cfg: Any) -> Callable[[dict], dict]:
    """The test pipeline of an mmengine config (``test_pipeline`` or the test dataloader's)."""
    import mmpretrain.datasets  # noqa: F401  (registers the transforms)
    from mmcv.transforms import Compose
    from mmpretrain.registry import TRANSFORMS

    steps = cfg.get("test_pipeline")
    if steps is None:
        steps = (cfg.get("test_dataloader") or {}).get("dataset", {}).get("pipeline")
    if not steps:
        raise UserError("the config has no test_pipeline; use one of configs/eval/*.py")
    return Compose([TRANSFORMS.build(dict(t)) for t in steps])


@torch.no_grad()
def classifier_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logits of RGB pixel images (uint8 or float in [0, 255]), normalised as the model's preprocessor does.

    ``images``: (N, 3, H, W), already resized/cropped to the model's input size. Returns (N, classes).
    """
    x = images.to(next(model.parameters()).device)  # (N, 3, H, W)
    return model(Normalizer.of_model(model)(x, channel_order="rgb"), mode="tensor")  # (N, classes)


@torch.no_grad()
def classifier_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The penultimate features (the neck's output, what the head sees) of RGB pixel images, normalised as in
    :func:`classifier_logits`. ``images``: (N, 3, H, W). Returns (N, D)."""
    x = images.to(next(model.parameters()).device)  # (N, 3, H, W)
    feats = model.extract_feat(Normalizer.of_model(model)(x, channel_order="rgb"))
    return (feats[-1] if isinstance(feats, tuple) else feats).flatten(1)  # (N, D)


def num_classes_of(model: nn.Module) -> int | None:
    head = getattr(model, "head", None)
    return getattr(head, "num_classes", None)


# ---------------------------------------------------------------------------------------------
# class-folder data
# ---------------------------------------------------------------------------------------------
def check_class_folders(root: str | os.PathLike, num_classes: int | None) -> list[str]:
    """The class folders of ``root``; a :class:`UserError` unless there is one per class of the head."""
    from sda.utils.io import is_image_file

    folders = class_folders(
        root, "generate and align the synthetic set first, or point --data-root at a class-folder set"
    )
    if not folders:
        raise UserError(f"data folder {root} holds no class folders; expected <root>/<class>/<image>")
    if num_classes is not None and len(folders) != num_classes:
        raise UserError(
            f"data folder {root} has {len(folders)} class folders but the model head has {num_classes} "
            f"classes; fix the data or set --cfg-options model.head.num_classes={len(folders)}"
        )
    for name in folders:
        sub = Path(root) / name
        if not any(is_image_file(f.name) for f in sub.rglob("*") if f.is_file()):
            raise UserError(f"class folder {sub} holds no images; every class needs at least one")
    return folders
