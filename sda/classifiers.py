"""MMPreTrain classifiers: configs, official mmcls v0 checkpoints, class-folder data.

Stage 3 fine-tunes and Stage 4 evaluates mmpretrain 1.x ``ImageClassifier`` models built from the
configs in ``configs/finetune``. The official ImageNet weights are mmcls 0.x files
(``{"meta": ..., "state_dict": ...}``); :func:`convert_v0_state_dict` renames the few keys that
changed between 0.x and 1.x so they load strictly:

- ResNet-50 and ConvNeXt: no renames (same module names in both versions).
- Swin: the final norm was ``backbone.norm`` (mmcls < 0.16) and is ``backbone.norm3`` now; the
  shifted-window ``attn_mask`` buffers were saved in the old files and are recomputed now. The
  patch-merging layers already used ``nn.Unfold`` order in 0.x, so their weights carry over as is.

Checkpoints load through :func:`sda.utils.checkpoint.safe_load` (no arbitrary pickles unless the
user passes ``--allow-pickle``); :func:`install_safe_checkpoint_loading` routes mmengine's own
loading of local files (``load_from``, ``--resume``) through it as well.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sda.utils.checkpoint import extract_state_dict, load_state_dict_strict, safe_load
from sda.utils.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
FINETUNE_CONFIG_DIR = REPO_ROOT / "configs" / "finetune"
PAPER_MODELS = ("ResNet50", "SwinT", "SwinB", "ConvNeXtT", "ConvNeXtB")
# the official mmcls v0 ImageNet checkpoints, https://download.openmmlab.com/mmclassification/v0/
OFFICIAL_CHECKPOINTS = {
    "ResNet50": "resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth",
    "SwinT": "swin-transformer/swin_tiny_224_b16x64_300e_imagenet_20210616_090925-66df6be6.pth",
    "SwinB": "swin-transformer/swin_base_224_b16x64_300e_imagenet_20210616_190742-93230b0d.pth",
    "ConvNeXtT": "convnext/convnext-tiny_3rdparty_32xb128_in1k_20220124-18abde00.pth",
    "ConvNeXtB": "convnext/convnext-base_3rdparty_32xb128_in1k_20220124-d0915162.pth",
}
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
    """An mmengine ``Config`` from a path, a model name or a ``Config``; ``cfg_options`` merged in."""
    from mmengine.config import Config

    cfg = config.copy() if isinstance(config, Config) else Config.fromfile(str(resolve_config_path(config)))
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


def _safe_load(path: str | os.PathLike, allow_pickle: bool = False, map_location: Any = "cpu") -> Any:
    with torch.serialization.safe_globals(_EXTRA_SAFE_GLOBALS):
        return safe_load(path, allow_pickle=allow_pickle, map_location=map_location)


def load_classifier_weights(model: nn.Module, ckpt_path: str | os.PathLike, allow_pickle: bool = False) -> dict:
    """Load an mmcls v0 or mmpretrain 1.x checkpoint into ``model`` strictly; returns its meta."""
    obj = _safe_load(ckpt_path, allow_pickle=allow_pickle)
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


def load_classifier(config: Any, ckpt: str | os.PathLike | None, allow_pickle: bool = False) -> nn.Module:
    """Shorthand of :func:`build_classifier_from_config` on the CPU."""
    return build_classifier_from_config(config, ckpt, allow_pickle=allow_pickle)


@torch.no_grad()
def classifier_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logits of RGB pixel images (uint8 or float in [0, 255]), normalised by the model's mean/std.

    ``images``: (N, 3, H, W), already resized/cropped to the model's input size. Returns (N, classes).
    """
    pre = getattr(model, "data_preprocessor", None)
    x = images.to(next(model.parameters()).device, torch.float32)  # (N, 3, H, W)
    if getattr(pre, "_enable_normalize", False):
        x = (x - pre.mean) / pre.std  # (N, 3, H, W)
    return model(x, mode="tensor")  # (N, classes)


# ---------------------------------------------------------------------------------------------
# mmengine glue: safe loading and a strict, v0-aware load_from / resume
# ---------------------------------------------------------------------------------------------
def install_safe_checkpoint_loading(allow_pickle: bool = False) -> None:
    """Route mmengine's loading of local checkpoints (``load_from``, resume) through ``safe_load``.

    mmengine 0.10 calls ``torch.load`` without ``weights_only``; torch >= 2.6 then refuses the
    message-hub objects of its own checkpoints. Arbitrary pickles still need ``allow_pickle``.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    def load_local(filename: str, map_location: Any = None) -> Any:
        return _safe_load(os.path.expanduser(filename), allow_pickle=allow_pickle, map_location=map_location)

    CheckpointLoader.register_scheme(prefixes="", loader=load_local, force=True)


_BUFFER_TAG = "__history_buffer__"


def _plain_message_hub(hub: dict) -> dict:
    """mmengine's message-hub state with each HistoryBuffer as a plain dict of arrays.

    A pickled HistoryBuffer holds bound methods (``getattr`` globals), which no safe loader may
    accept; plain arrays load with ``weights_only=True``.
    """
    scalars = {}
    for key, buf in hub.get("log_scalars", {}).items():
        if hasattr(buf, "_log_history"):
            buf = {
                _BUFFER_TAG: True,
                "log_history": buf._log_history,
                "count_history": buf._count_history,
                "max_length": buf.max_length,
            }
        scalars[key] = buf
    return {**hub, "log_scalars": scalars}


def _restore_message_hub(hub: dict) -> dict:
    from mmengine.logging import HistoryBuffer

    scalars = {}
    for key, buf in hub.get("log_scalars", {}).items():
        if isinstance(buf, Mapping) and buf.get(_BUFFER_TAG):
            buf = HistoryBuffer(list(buf["log_history"]), list(buf["count_history"]), int(buf["max_length"]))
        scalars[key] = buf
    return {**hub, "log_scalars": scalars}


def safe_checkpoint_hook() -> Any:
    """An mmengine hook that keeps training checkpoints safe to load and loads them strictly.

    - before saving: the message hub is stored as plain arrays (loadable with ``weights_only``);
    - after loading (``load_from`` or ``--resume``): HistoryBuffers are restored, mmcls v0 keys are
      converted, and a checkpoint that does not fit the model raises a :class:`UserError` listing
      the missing / unexpected keys and shape mismatches (mmengine alone only logs them).
    """
    from mmengine.hooks import Hook
    from mmengine.model import is_model_wrapper

    class SafeCheckpointHook(Hook):
        priority = "VERY_HIGH"

        def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
            if isinstance(checkpoint.get("message_hub"), Mapping):
                checkpoint["message_hub"] = _plain_message_hub(checkpoint["message_hub"])

        def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
            if isinstance(checkpoint.get("message_hub"), Mapping):
                checkpoint["message_hub"] = _restore_message_hub(checkpoint["message_hub"])
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            sd = convert_v0_state_dict(extract_state_dict(checkpoint, keys=("state_dict", "model")))
            what = f"checkpoint {getattr(runner, '_load_from', None) or '(load_from / --resume)'}"
            load_state_dict_strict(model, sd, what)
            checkpoint["state_dict"] = sd

    return SafeCheckpointHook()


# ---------------------------------------------------------------------------------------------
# class-folder data
# ---------------------------------------------------------------------------------------------
def class_folders(root: str | os.PathLike) -> list[str]:
    """The class folders under ``root`` in label order (sorted names, as mmpretrain's CustomDataset)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"data folder {root} not found; generate and align the synthetic set first "
            "or point --data-root at a class-folder set"
        )
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def check_class_folders(root: str | os.PathLike, num_classes: int | None) -> list[str]:
    """The class folders of ``root``; a :class:`UserError` unless there is one per class of the head."""
    from sda.utils.io import is_image_file

    folders = class_folders(root)
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
