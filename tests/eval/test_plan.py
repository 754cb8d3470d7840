"""``eval/evaluate.py --plan``: the forwards each mode needs, counted as the scorer runs them, and the images of a
subset, which must be the images the run then scores (tiny MMPreTrain ResNet, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sda.eval import EvalConfig, evaluate
from sda.eval.plan import eval_plan, forward_pairs
from sda.testing import make_layout, tiny_classifier, tiny_classifier_config
from sda.utils.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def test_each_model_image_pair_is_counted_once() -> None:
    assert forward_pairs(["first", "second", "sum", "sda"], "original") == [
        ("original", "raw"),
        ("original", "projected"),
        ("finetuned", "projected"),
    ]
    assert forward_pairs(["first"], "finetuned") == [("finetuned", "raw")]
    fuse = forward_pairs(["entropy_fuse", "var_fuse", "diffpure"], "original")
    assert fuse == [
        ("original", "raw"),
        ("original", "projected"),
        ("original", "entropy_fuse blend"),
        ("original", "var_fuse blend"),
        ("original", "purified"),
    ]


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("plan")
    for root in ("C", "C-Syn"):
        make_layout(tmp / root, "C", ("fog", "snow"), per_class=4, classes=("n01", "n02", "n03"))
    cfg = tiny_classifier_config(tmp / "TinyResNet.py", num_classes=3)
    tiny_classifier(cfg, tmp / "orig.pth", 1), tiny_classifier(cfg, tmp / "ft.pth", 2)
    return tmp


def config(tmp: Path, **kw) -> EvalConfig:
    return EvalConfig(**{**dict(config=str(tmp / "TinyResNet.py"), checkpoint=str(tmp / "ft.pth"),
                                originckpt=str(tmp / "orig.pth"), data_prefix1=str(tmp / "C"),
                                data_prefix2=str(tmp / "C-Syn"), corruptions="fog,snow", device="cpu", num_workers=0),
                         **kw})  # fmt: skip


@pytest.mark.parametrize("per_class", [None, 2])
def test_the_plan_counts_the_images_the_run_scores(target: Path, per_class: int | None) -> None:
    cfg = config(target, per_class=per_class, subset_seed=3)
    plan = eval_plan(cfg)
    assert plan["images"] == (per_class or 4) * 3 * 2 and plan["forwards"] == plan["images"] * 3
    assert evaluate(cfg)["images"] == plan["images"]


def test_a_missing_input_is_named_with_its_fix(target: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--data_prefix2 .*absent not found; project it with scripts/align.sh"):
        eval_plan(config(target, data_prefix2=str(tmp_path / "absent")))
    with pytest.raises(UserError, match="checkpoint .*gone.pth not found"):
        eval_plan(config(target, checkpoint=str(tmp_path / "gone.pth")))
