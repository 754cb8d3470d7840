"""sda.finetune.classifiers: mmcls v0 checkpoints load strictly into the 1.x models; class-folder checks."""

from __future__ import annotations

import functools
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image

from sda.finetune.checkpoints import _plain_message_hub, _restore_message_hub, safe_checkpoint_hook
from sda.finetune.classifiers import (
    build_classifier,
    build_classifier_from_config,
    check_class_folders,
    classifier_logits,
    convert_v0_state_dict,
    detect_arch,
    load_classifier_weights,
    load_config,
)
from sda.finetune.classifiers import safe_load_classifier as _safe_load
from sda.utils.errors import UserError
from sda.utils.weights import PAPER_MODELS

# ---------------------------------------------------------------------------------------------
# The key names of the official mmcls 0.x files, listed by hand from mmcls 0.x's module layout
# (ResNet: mmcls 0.15; Swin: mmcls 0.13, before the final norm became ``norm3``; ConvNeXt: 0.20).
# ---------------------------------------------------------------------------------------------
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_WB = ("weight", "bias")


def _names(prefix: str, fields: tuple[str, ...]) -> list[str]:
    return [f"{prefix}.{f}" for f in fields]


def v0_resnet50_keys() -> list[str]:
    keys = ["backbone.conv1.weight", *_names("backbone.bn1", _BN)]
    for i, n in enumerate((3, 4, 6, 3), start=1):
        for j in range(n):
            p = f"backbone.layer{i}.{j}"
            for c in (1, 2, 3):
                keys += [f"{p}.conv{c}.weight", *_names(f"{p}.bn{c}", _BN)]
            if j == 0:
                keys += [f"{p}.downsample.0.weight", *_names(f"{p}.downsample.1", _BN)]
    return keys + _names("head.fc", _WB)


def v0_swin_keys(depths: tuple[int, ...]) -> list[str]:
    keys = _names("backbone.patch_embed.projection", _WB) + _names("backbone.patch_embed.norm", _WB)
    for i, n in enumerate(depths):
        for j in range(n):
            p = f"backbone.stages.{i}.blocks.{j}"
            keys += _names(f"{p}.norm1", _WB)
            keys += [f"{p}.attn.w_msa.relative_position_bias_table", f"{p}.attn.w_msa.relative_position_index"]
            keys += _names(f"{p}.attn.w_msa.qkv", _WB) + _names(f"{p}.attn.w_msa.proj", _WB)
            if j % 2 == 1 and i < len(depths) - 1:  # shifted windows (the last stage is one window)
                keys.append(f"{p}.attn.attn_mask")
            keys += _names(f"{p}.norm2", _WB)
            keys += _names(f"{p}.ffn.layers.0.0", _WB) + _names(f"{p}.ffn.layers.1", _WB)
        if i < len(depths) - 1:
            p = f"backbone.stages.{i}.downsample"
            keys += [*_names(f"{p}.norm", _WB), f"{p}.reduction.weight"]
    return keys + _names("backbone.norm", _WB) + _names("head.fc", _WB)


def v0_convnext_keys(depths: tuple[int, ...]) -> list[str]:
    keys = _names("backbone.downsample_layers.0.0", _WB) + _names("backbone.downsample_layers.0.1", _WB)
    for i in range(1, len(depths)):
        keys += _names(f"backbone.downsample_layers.{i}.0", _WB) + _names(f"backbone.downsample_layers.{i}.1", _WB)
    for i, n in enumerate(depths):
        for j in range(n):
            p = f"backbone.stages.{i}.{j}"
            keys.append(f"{p}.gamma")
            for m in ("depthwise_conv", "norm", "pointwise_conv1", "pointwise_conv2"):
                keys += _names(f"{p}.{m}", _WB)
    return keys + _names("backbone.norm3", _WB) + _names("head.fc", _WB)


V0_KEYS = {
    "ResNet50": v0_resnet50_keys,
    "SwinT": functools.partial(v0_swin_keys, (2, 2, 6, 2)),
    "SwinB": functools.partial(v0_swin_keys, (2, 2, 18, 2)),
    "ConvNeXtT": functools.partial(v0_convnext_keys, (3, 3, 9, 3)),
    "ConvNeXtB": functools.partial(v0_convnext_keys, (3, 3, 27, 3)),
}


@functools.cache
def paper_model(name: str) -> torch.nn.Module:
    return build_classifier(load_config(name))


def v0_state_dict(name: str) -> OrderedDict:
    """A v0-named state dict shaped like the 1.x model, with values that differ from the model's."""
    own = paper_model(name).state_dict()
    sd = OrderedDict()
    for k in V0_KEYS[name]():
        if k.endswith("attn_mask"):
            sd[k] = torch.zeros(4, 49, 49)
        else:
            t = own[k.replace("backbone.norm.", "backbone.norm3.")]
            sd[k] = t + 0.5 if t.is_floating_point() else t.clone()
    return sd


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_v0_checkpoint_loads_strictly(name, tmp_path):
    sd = v0_state_dict(name)
    path = tmp_path / f"{name}_v0.pth"
    torch.save({"meta": {"mmcls_version": "0.15.0", "CLASSES": [f"c{i}" for i in range(1000)]}, "state_dict": sd}, path)
    model = paper_model(name)
    meta = load_classifier_weights(model, path)  # strict: raises on any missing/unexpected key
    assert meta["mmcls_version"] == "0.15.0"
    own = model.state_dict()
    for k in list(sd)[:: max(1, len(sd) // 20)]:
        if not k.endswith("attn_mask"):
            assert torch.equal(own[k.replace("backbone.norm.", "backbone.norm3.")], sd[k]), k


def test_training_hook_converts_v0_and_refuses_mismatches():
    from types import SimpleNamespace

    model = paper_model("SwinT")
    runner = SimpleNamespace(model=model, _load_from="pretrained_ckpt/swin_tiny.pth")
    hook = safe_checkpoint_hook()
    checkpoint = {"meta": {}, "state_dict": v0_state_dict("SwinT")}
    hook.after_load_checkpoint(runner, checkpoint)  # what mmengine calls before loading load_from
    assert set(checkpoint["state_dict"]) == set(model.state_dict())
    bad = {"meta": {}, "state_dict": v0_state_dict("ConvNeXtT")}
    with pytest.raises(UserError, match="pretrained_ckpt/swin_tiny.pth does not match"):
        hook.after_load_checkpoint(runner, bad)


def test_convert_v0_renames_swin_only_and_is_idempotent():
    swin = {
        "backbone.stages.3.blocks.0.attn.w_msa.qkv.weight": torch.ones(1),
        "backbone.stages.0.blocks.1.attn.attn_mask": torch.ones(1),
        "backbone.norm.weight": torch.ones(1),
        "head.fc.weight": torch.ones(1),
    }
    assert detect_arch(swin) == "swin"
    out = convert_v0_state_dict(swin)
    assert set(out) == {"backbone.stages.3.blocks.0.attn.w_msa.qkv.weight", "backbone.norm3.weight", "head.fc.weight"}
    assert convert_v0_state_dict(out) == out
    resnet = {"backbone.layer1.0.conv1.weight": torch.ones(1), "backbone.norm.weight": torch.ones(1)}
    assert detect_arch(resnet) == "resnet" and convert_v0_state_dict(resnet) == resnet


def test_mismatched_checkpoint_names_the_keys(tmp_path):
    sd = v0_state_dict("ConvNeXtT")
    sd.pop("head.fc.bias")
    sd["backbone.extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save({"meta": {}, "state_dict": sd}, path)
    with pytest.raises(UserError, match=r"missing keys: head\.fc\.bias.*unexpected keys: backbone\.extra"):
        load_classifier_weights(paper_model("ConvNeXtT"), path)


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_models_forward_a_tiny_input(name):
    model = paper_model(name).eval()
    size = 224 if name.startswith("Swin") else 32  # Swin's last stage must hold a 7x7 window
    with torch.no_grad():
        logits = model(torch.randn(1, 3, size, size), mode="tensor")  # (1, 1000)
    assert logits.shape == (1, 1000)


def test_classifier_logits_matches_the_mmpretrain_pipeline():
    torch.manual_seed(0)
    model = build_classifier_from_config("TinyResNet")
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)  # RGB
    with torch.no_grad():
        # mmpretrain's own path: BGR uint8 in, data_preprocessor flips to RGB and normalises
        data = model.data_preprocessor({"inputs": list(images.flip(1))}, training=False)
        ref = model(data["inputs"], mode="tensor")  # (2, 10)
    torch.testing.assert_close(classifier_logits(model, images), ref)


def test_message_hub_round_trips_through_the_safe_loader(tmp_path):
    from mmengine.logging import HistoryBuffer

    hub = {
        "log_scalars": {"train/loss": HistoryBuffer([1.0, 0.5], [1, 1])},
        "runtime_info": {"epoch": 2},
        "resumed_keys": {"train/loss": True},
    }
    path = tmp_path / "ckpt.pth"
    torch.save({"message_hub": _plain_message_hub(hub)}, path)
    back = _restore_message_hub(_safe_load(path)["message_hub"])
    buf = back["log_scalars"]["train/loss"]
    assert isinstance(buf, HistoryBuffer) and buf.mean() == pytest.approx(0.75)
    assert back["runtime_info"] == {"epoch": 2}


def _class_folders(root, n):
    for k in range(n):
        (root / f"{k:04d}").mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / f"{k:04d}" / "000000.png")


def test_class_folder_checks(tmp_path):
    _class_folders(tmp_path / "ok", 3)
    assert check_class_folders(tmp_path / "ok", 3) == ["0000", "0001", "0002"]
    with pytest.raises(UserError, match="3 class folders but the model head has 10 classes"):
        check_class_folders(tmp_path / "ok", 10)
    (tmp_path / "ok" / "0003").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        check_class_folders(tmp_path / "ok", 4)
    with pytest.raises(UserError, match="does not exist"):
        check_class_folders(tmp_path / "missing", 3)
