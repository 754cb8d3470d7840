"""The SDA authors' quick-evaluation artifacts load as they are: a fine-tuned checkpoint written by MMEngine (their
MMPreTrain fork saves MMEngine's training checkpoints: message hub, optimizer, schedulers) gives its weights without
--allow-pickle and runs no pickled code; their data/ and finetuned_ckpt/ layout is what eval reads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sda.utils.checkpoint import UnsafePickleError, extract_weights, safe_load

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "finetune" / "TinyResNet.py"


def _images(root: Path, classes: int = 10, per: int = 2, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for k in range(classes):
        (root / f"n{k:04d}").mkdir(parents=True, exist_ok=True)
        for i in range(per):
            img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / f"n{k:04d}" / f"ILSVRC2012_val_{k:04d}{i}.JPEG")


@pytest.fixture(scope="module")
def mmengine_checkpoint(tmp_path_factory) -> Path:
    """One epoch of stock MMEngine's Runner on TinyResNet, saved by Runner.save_checkpoint."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    tmp = tmp_path_factory.mktemp("mmengine")
    _images(tmp / "train")
    cfg = Config.fromfile(str(TINY))
    cfg.merge_from_dict({"load_from": None, "work_dir": str(tmp / "work"), "train_cfg.max_epochs": 1})
    cfg.train_dataloader.dataset.data_root = str(tmp / "train")
    cfg.param_scheduler = [dict(type="MultiStepLR", by_epoch=True, milestones=[4], gamma=0.1)]
    cfg.default_hooks.logger.interval = 1
    torch.manual_seed(0)
    Runner.from_cfg(cfg).train()
    return tmp / "work" / "epoch_1.pth"


def test_an_mmengine_checkpoint_gives_its_weights_without_allow_pickle(mmengine_checkpoint: Path) -> None:
    from sda.finetune.classifiers import build_classifier_from_config

    obj = torch.load(mmengine_checkpoint, weights_only=False)  # trusted here: it was written above
    assert {"meta", "state_dict", "message_hub", "optimizer"} <= set(obj)
    with pytest.raises(UnsafePickleError, match="--allow-pickle"):
        safe_load(mmengine_checkpoint)  # the plain safe load refuses it ...
    model = build_classifier_from_config(str(TINY), mmengine_checkpoint)  # ... the classifier loader takes the weights
    for k, v in model.state_dict().items():
        assert torch.equal(v, obj["state_dict"][k]), k


def test_extracting_weights_runs_no_pickled_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {"w": torch.arange(3.0)}, "message_hub": Payload()}, tmp_path / "evil.pth")
    sd = extract_weights(tmp_path / "evil.pth", keys=("state_dict",))
    assert torch.equal(sd["w"], torch.arange(3.0)) and not marker.exists()


def test_the_authors_layout_evaluates(mmengine_checkpoint: Path, tmp_path: Path) -> None:
    """data/ImageNet-C, data/ImageNet-C-Syn (their re-synthesized set: JPEG, no manifest) and finetuned_ckpt/ as the
    SDA README places them, scored by eval/evaluate.py with the MMEngine checkpoint as the fine-tuned model."""
    from sda.eval import EvalConfig, evaluate

    data = tmp_path / "data"
    _images(data / "ImageNet-C" / "fog" / "5", seed=1)
    _images(data / "ImageNet-C-Syn" / "fog" / "5", seed=2)
    (tmp_path / "finetuned_ckpt").mkdir()
    ft = tmp_path / "finetuned_ckpt" / "TinyResNet.pth"
    ft.write_bytes(mmengine_checkpoint.read_bytes())
    cfg = EvalConfig(
        config=str(TINY), checkpoint=str(ft), originckpt=str(ft), data_prefix1=str(data / "ImageNet-C"),
        data_prefix2=str(data / "ImageNet-C-Syn"), corruptions="fog", device="cpu", num_workers=0, modes="sda,sum",
    )  # fmt: skip
    record = evaluate(cfg)
    assert record["images"] == 20 and 0 <= record["results"]["fog/5"]["top1"]["sda"] <= 100
