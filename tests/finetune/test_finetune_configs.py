"""The fine-tuning configs: they parse, build, and hold the SDA repository's Stage 3 recipes exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sda.finetune.classifiers import build_classifier, load_config
from sda.utils.weights import PAPER_MODELS

ROOT = Path(__file__).resolve().parents[2]
# files starting with "_" are shared recipe fragments, not runnable configs
# sda/mini/configs/: the tiny recipe, and each mini benchmark's from-scratch source recipe (and its fine-tuning recipe)
ALL_CONFIGS = sorted((ROOT / "configs" / "finetune").glob("[!_]*.py")) + sorted(
    (ROOT / "sda" / "mini" / "configs").glob("**/*.py")
)
CKPT = {
    "ResNet50": "resnet50_8xb32_in1k_20210831-ea4938fc.pth",
    "SwinT": "swin_tiny_224_b16x64_300e_imagenet_20210616_090925-66df6be6.pth",
    "ConvNeXtT": "convnext-tiny_3rdparty_32xb128_in1k_20220124-18abde00.pth",
    "SwinB": "swin_base_224_b16x64_300e_imagenet_20210616_190742-93230b0d.pth",
    "ConvNeXtB": "convnext-base_3rdparty_32xb128_in1k_20220124-d0915162.pth",
}
DROP_PATH = {"SwinT": 0.2, "SwinB": 0.2, "ConvNeXtT": 0.1, "ConvNeXtB": 0.5}


def test_every_config_parses():
    assert {p.stem for p in ALL_CONFIGS} >= set(PAPER_MODELS) | {"TinyResNet", "classifier_scratch", "finetune"}
    assert {p.parent.name for p in ALL_CONFIGS if p.stem == "classifier_scratch"} == {"configs", "digits", "glyphs32"}
    for path in ALL_CONFIGS:
        cfg = load_config(path)
        assert cfg.model.type == "ImageClassifier", path
        assert cfg.train_dataloader.dataset.type == "CustomDataset", path


@pytest.mark.parametrize(
    "path", [p for p in ALL_CONFIGS if p.stem not in PAPER_MODELS], ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_tiny_configs_build_and_forward(path):
    # (the five paper models are built and run in tests/test_classifiers.py)
    model = build_classifier(load_config(path)).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32), mode="tensor")  # (2, 10)
    assert logits.shape == (2, 10)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # for the BN-adapt control


def _types(pipeline):
    return [t["type"] for t in pipeline]


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_recipe(name):
    cfg = load_config(name)
    assert cfg.load_from == f"pretrained_ckpt/{CKPT[name]}"
    assert cfg.train_dataloader.dataset.data_root == "data/DiT-Syn"
    assert cfg.train_cfg.max_epochs == 30 and cfg.train_cfg.by_epoch
    assert cfg.model.get("train_cfg") is None  # no Mixup / CutMix
    assert "batch_augments" not in cfg.get("data_preprocessor", {})
    assert cfg.data_preprocessor.mean == [123.675, 116.28, 103.53]
    assert cfg.data_preprocessor.std == [58.395, 57.12, 57.375] and cfg.data_preprocessor.to_rgb
    assert cfg.val_dataloader is None and cfg.val_cfg is None
    assert cfg.auto_scale_lr.enable is False
    pipe = cfg.train_dataloader.dataset.pipeline
    opt = cfg.optim_wrapper.optimizer
    loss = cfg.model.head.loss
    if name == "ResNet50":
        assert cfg.train_dataloader.batch_size == 64
        assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == ("SGD", 5e-4, 0.9, 1e-4)
        sched = cfg.param_scheduler
        assert (sched.type, sched.milestones, sched.gamma, sched.by_epoch) == ("MultiStepLR", [10, 20, 25], 0.1, True)
        assert cfg.optim_wrapper.get("clip_grad") is None
        assert _types(pipe) == ["LoadImageFromFile", "RandomResizedCrop", "RandomFlip", "PackInputs"]
        assert pipe[1].scale == 224 and pipe[2].prob == 0.5
        assert loss.type == "CrossEntropyLoss"
        return
    assert cfg.train_dataloader.batch_size == 128
    assert (opt.type, opt.lr, opt.weight_decay, tuple(opt.betas), opt.eps) == ("AdamW", 2e-5, 1e-8, (0.9, 0.999), 1e-8)
    pw = cfg.optim_wrapper.paramwise_cfg
    assert (pw.norm_decay_mult, pw.bias_decay_mult) == (0.0, 0.0)
    assert pw.custom_keys[".absolute_pos_embed"].decay_mult == 0.0
    assert pw.custom_keys[".relative_position_bias_table"].decay_mult == 0.0
    assert cfg.optim_wrapper.clip_grad.max_norm == 5.0
    warm, cos = cfg.param_scheduler
    assert (warm.type, warm.start_factor, warm.end, warm.by_epoch, warm.convert_to_iter_based) == (
        "LinearLR",
        2e-8,
        5,
        True,
        True,
    )
    assert (cos.type, cos.eta_min, cos.begin, cos.by_epoch) == ("CosineAnnealingLR", 2e-7, 5, True)
    assert _types(pipe) == [
        "LoadImageFromFile",
        "RandomResizedCrop",
        "RandomFlip",
        "RandAugment",
        "RandomErasing",
        "PackInputs",
    ]
    rrc, flip, ra, erase = pipe[1:5]
    assert (rrc.scale, rrc.interpolation, rrc.backend, flip.prob) == (224, "bicubic", "pillow", 0.5)
    assert (ra.num_policies, ra.magnitude_level, ra.magnitude_std) == (2, 9, 0.5)
    assert erase.erase_prob == 0.25
    assert (loss.type, loss.label_smooth_val) == ("LabelSmoothLoss", 0.1)
    assert cfg.model.backbone.drop_path_rate == DROP_PATH[name]


def test_swin_weight_decay_exemptions_reach_the_optimizer():
    from mmengine.optim import build_optim_wrapper

    cfg = load_config("SwinT")
    model = build_classifier(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)]: g["weight_decay"] for g in wrapper.optimizer.param_groups for p in g["params"]}
    assert decay["backbone.stages.0.blocks.0.attn.w_msa.qkv.weight"] == 1e-8
    for exempt in (
        "backbone.stages.0.blocks.0.attn.w_msa.relative_position_bias_table",
        "backbone.stages.0.blocks.0.norm1.weight",
        "backbone.stages.0.blocks.0.attn.w_msa.qkv.bias",
        "head.fc.bias",
    ):
        assert decay[exempt] == 0.0, exempt
    assert wrapper.clip_grad_kwargs == {"max_norm": 5.0}
