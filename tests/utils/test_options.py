"""sda.utils.options: one definition per setting. Flags are generated from the typed configs' fields, a config
makes its own command line back (round trip), and every entry point's parser defaults equal its config's."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from sda.utils.options import add_options, field_default, flag_fields, option, option_values, to_argv

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Demo:
    src: str = option(kind="positional", help="input")
    n: int = option(3, "a count", names=("--n", "--count"))
    rate: float = option(0.5)
    name: str | None = option(None, choices=("a", "b"))
    fast: bool = option(False, kind="switch")
    clip: bool = option(True, "a guided-diffusion boolean (True/False)")
    tf32: bool = option(True, kind="toggle")
    path: Path | None = option(None)
    items: tuple[str, ...] = option(("x",), nargs="+")
    resume: str | None = option(None, nargs=("?", "auto"))
    hidden: int = 7  # not a flag


def parse(argv: list[str]) -> Demo:
    p = argparse.ArgumentParser()
    add_options(p, Demo)
    return Demo(**option_values(Demo, p.parse_args(argv)))


def test_kinds_aliases_and_types() -> None:
    d = parse(["in", "--count", "5", "--rate", "2", "--fast", "--clip", "False", "--no-tf32", "--path", "p/q"])
    assert (d.src, d.n, d.rate, d.fast, d.clip, d.tf32, d.path) == ("in", 5, 2.0, True, False, False, Path("p/q"))
    assert parse(["in", "--resume"]).resume == "auto" and parse(["in", "--resume", "c.pth"]).resume == "c.pth"
    assert parse(["in", "--items", "a", "b"]).items == ["a", "b"]
    with pytest.raises(SystemExit):
        parse(["in", "--name", "c"])  # choices
    assert "hidden" not in {f.name for f, _ in flag_fields(Demo)}


def test_a_config_makes_its_command_line_back() -> None:
    d = parse(["in", "--count", "5", "--fast", "--clip", "False", "--no-tf32", "--name", "b", "--items", "a", "b"])
    argv = to_argv(d)
    assert argv[0] == "in" and "--n" in argv and "--count" not in argv  # the canonical spelling
    assert "--rate" not in argv  # defaults stay implicit
    assert parse(argv) == d
    assert to_argv(parse(["in"])) == ["in"]


def _entry_points() -> list[tuple[str, argparse.ArgumentParser, list[type]]]:
    from sda.align.config import AlignConfig, ProjectionConfig
    from sda.align.config import build_parser as align_parser
    from sda.eval.builders import CorruptedSet
    from sda.eval.config import EvalConfig
    from sda.eval.config import build_parser as eval_parser
    from sda.eval.tta import TTAConfig
    from sda.finetune.config import BNAdaptConfig, FinetuneConfig
    from sda.finetune.config import build_parser as finetune_parser
    from sda.gen.config import GenConfig
    from sda.gen.config import build_parser as gen_parser
    from sda.training.config import GenTrainConfig, TrainConfig, align_train_parser

    def bare(cls: type, prog: str) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(prog=prog)
        add_options(p, cls)
        return p

    return [
        ("align/project.py", align_parser(), [ProjectionConfig, AlignConfig]),
        ("gen/sample.py", gen_parser(), [GenConfig]),
        ("eval/evaluate.py", eval_parser(), [EvalConfig, TTAConfig]),
        ("finetune/train.py", finetune_parser(), [FinetuneConfig]),
        ("finetune/bn_adapt.py", bare(BNAdaptConfig, "bn_adapt"), [BNAdaptConfig]),
        ("eval/build_c.py", bare(CorruptedSet, "build_c"), [CorruptedSet]),
        ("gen/train.py", GenTrainConfig.build_parser(), [GenTrainConfig]),
        ("align/train.py", align_train_parser(), [TrainConfig]),
    ]


@pytest.mark.parametrize("name,parser,classes", _entry_points(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_parser_default_is_its_config_fields_default(name: str, parser, classes) -> None:
    defaults = {a.dest: a.default for a in parser._actions}
    checked = 0
    for cls in classes:
        for field, flag in flag_fields(cls):
            if flag.kind == "positional" or flag.required:
                continue
            assert defaults[field.name] == field_default(field), (name, field.name)
            checked += 1
    assert checked > 0


def test_the_projection_settings_are_declared_once() -> None:
    """--D, --N, --scale and --timestep_respacing: one declaration each in the source (the config fields)."""
    root = Path(__file__).resolve().parents[2]
    sources = [
        p for d in ("sda", "gen", "align", "finetune", "eval", "mini", "benchmarks") for p in (root / d).rglob("*.py")
    ]
    config = root / "sda" / "align" / "config.py"
    for flag in ('"--D"', '"--N"', '"--scale"', '"--timestep_respacing"'):
        hits = {p: p.read_text().count(flag) for p in sources if flag in p.read_text()}
        assert set(hits) <= {config} and sum(hits.values()) <= 1, (flag, hits)  # at most its field's own spelling
    from sda.align.config import AlignConfig, ProjectionConfig

    names = {f.name for c in (ProjectionConfig, AlignConfig) for f, _ in flag_fields(c)}
    assert {"N", "D", "scale", "timestep_respacing"} <= names
    assert field_default(dataclasses.fields(ProjectionConfig)[0]) == 50


def test_two_configs_on_one_parser_cannot_share_a_stored_name() -> None:
    @dataclass(frozen=True)
    class Other:
        n: int = option(1, "another count", names=("--other-n",))

    p = argparse.ArgumentParser()
    add_options(p, Demo)
    with pytest.raises(ValueError, match="Other.n"):
        add_options(p, Other)  # argparse would store --other-n over --n


def test_eval_and_tta_batch_sizes_are_separate_settings() -> None:
    from sda.eval import EvalConfig

    argv = [
        str(REPO / "configs/eval/ResNet50.py"),
        "ft.pth",
        "--data_prefix1",
        "d",
        "--data_prefix2",
        "p",
        "--batch-size",
        "16",
        "--tta-batch-size",
        "4",
    ]
    cfg = EvalConfig.from_argv(argv)
    assert (cfg.batch_size, cfg.tta.tta_batch_size) == (16, 4)
    assert EvalConfig.from_argv(cfg.to_argv()) == cfg
