"""eval/report.py: eval's results merged into Table 1's layout beside the published numbers.

The tiny classifier's config is named ResNet50.py, so the report compares it with the paper's ResNet-50 row:
the numbers must be eval's own (mean, interval, paired difference), the published ones the paper's, and the
"inside" flag must follow the interval.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from sda.eval import EvalConfig, evaluate
from sda.eval import published as P
from sda.eval.report import ReportConfig, report
from sda.testing import make_layout, tiny_classifier, tiny_classifier_config
from sda.utils.errors import UserError
from sda.utils.layout import CORRUPTIONS

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def results(tmp_path_factory, one_thread) -> Path:
    """ResNet50_C.json (all 15 corruptions), ResNet50_W.json, ResNet50_clean.json and SwinT_C.json (2 corruptions)."""
    tmp = tmp_path_factory.mktemp("report")
    for root in ("C", "C-Syn"):
        make_layout(tmp / root, "C", CORRUPTIONS, per_class=3, size=(24, 24))
    for root in ("W", "W-Syn", "val"):
        make_layout(tmp / root, "W", per_class=5, size=(24, 24))
    out = tmp / "results"
    for model in ("ResNet50", "SwinT"):
        cfg = tiny_classifier_config(tmp / "configs" / f"{model}.py")
        orig, ft = tiny_classifier(cfg, tmp / f"{model}_orig.pth", 1), tiny_classifier(cfg, tmp / f"{model}_ft.pth", 2)
        common = dict(config=str(cfg), checkpoint=str(ft), originckpt=str(orig), device="cpu", num_workers=0)
        corr = CORRUPTIONS if model == "ResNet50" else ("fog", "snow")
        evaluate(EvalConfig(**common, data_prefix1=str(tmp / "C"), data_prefix2=str(tmp / "C-Syn"),
                            corruptions=",".join(corr), out=str(out / f"{model}_C.json")))  # fmt: skip
        if model == "ResNet50":
            evaluate(EvalConfig(**common, datatype="W", data_prefix1=str(tmp / "W"), data_prefix2=str(tmp / "W-Syn"),
                                out=str(out / f"{model}_W.json")))  # fmt: skip
            evaluate(EvalConfig(**common, datatype="clean", data_prefix1=str(tmp / "val"), modes="first",
                                out=str(out / f"{model}_clean.json")))  # fmt: skip
    return out


def _cells(rep: dict, model: str, dataset: str) -> dict[str, dict]:
    return {c["column"]: c for c in rep["cells"] if c["model"] == model and c["dataset"] == dataset}


def test_the_report_is_eval_s_numbers_beside_the_paper_s(results: Path) -> None:
    rep = report(ReportConfig(results=str(results)))
    rec = json.loads((results / "ResNet50_C.json").read_text())
    c = _cells(rep, "ResNet50", "C")
    assert {"Source", "Projected", "DDA", "SDA", "SDA - DDA", "DDA - Source"} <= set(c)
    for column, mode in (("Source", "first"), ("DDA", "sum"), ("SDA", "sda")):
        cell, iv = c[column], rec["intervals"]["5"][mode]
        assert cell["ours"] == rec["mean"]["5"]["top1"][mode] and (cell["lo"], cell["hi"]) == (iv["lo"], iv["hi"])
        assert cell["paper"] == P.IMAGENET_C[column][0] and cell["comparable"]
        assert cell["inside"] == (iv["lo"] <= cell["paper"] <= iv["hi"])
        assert cell["diff"] == pytest.approx(cell["ours"] - cell["paper"])
    assert c["Projected"]["paper"] is None and c["Projected"]["inside"] is None  # not a column of the paper
    d = c["SDA - DDA"]
    assert d["ours"] == rec["intervals"]["5"]["sda-sum"]["value"] and d["paper"] == pytest.approx(32.5 - 29.7)
    assert c["Source"]["images"] == 15 * 2 * 3 and c["Source"]["subset"] is None

    w = _cells(rep, "ResNet50", "W")
    wrec = json.loads((results / "ResNet50_W.json").read_text())
    assert w["SDA"]["ours"] == wrec["results"]["val"]["top1"]["sda"] and w["SDA"]["paper"] == 54.7

    clean = _cells(rep, "ResNet50", "clean")
    crec = json.loads((results / "ResNet50_clean.json").read_text())
    assert set(clean) == {"Source"} and clean["Source"]["paper"] == 76.6
    assert [clean["Source"]["lo"], clean["Source"]["hi"]] == crec["results"]["val"]["top1_ci"]["first"]


def test_a_partial_mean_is_shown_but_not_compared(results: Path) -> None:
    rep = report(ReportConfig(results=str(results)))
    s = _cells(rep, "SwinT", "C")
    assert s["SDA"]["paper"] == 42.5 and not s["SDA"]["comparable"] and s["SDA"]["inside"] is None
    md = (results / "table1.md").read_text()
    assert "| Swin-T (not the paper's mean: see below) |" in md and "Swin-T C" in md


def test_markdown_csv_and_json_agree(results: Path) -> None:
    rep = report(ReportConfig(results=str(results), out=str(results / "t1")))
    rows = list(csv.DictReader(io.StringIO((results / "t1.csv").read_text())))
    assert len(rows) == len(rep["cells"]) == len(json.loads((results / "t1.json").read_text())["cells"])
    md = (results / "t1.md").read_text()
    src = _cells(rep, "ResNet50", "C")["Source"]
    assert f"{src['ours']:.2f} [{src['lo']:.1f}, {src['hi']:.1f}] (18.7" in md  # Table 1's cell for ResNet-50
    for title in ("ImageNet-C, severity 5", "ImageNet-W", "ImageNet val (clean)", "Paired differences"):
        assert title in md


def test_bad_inputs_are_named(results: Path, tmp_path: Path) -> None:
    (tmp_path / "X_C.json").write_text("{not json")
    with pytest.raises(UserError, match="X_C.json"):
        report(ReportConfig(results=str(tmp_path)))
    with pytest.raises(UserError, match="is not a folder"):
        report(ReportConfig(results=str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no eval results"):
        report(ReportConfig(results=str(tmp_path / "empty")))


def test_the_readme_states_the_published_numbers_of_published_py() -> None:
    """The README's copy of the paper's tables must be sda/eval/published.py's."""
    text = (REPO / "README.md").read_text()
    for title, table in (("ImageNet-C", P.IMAGENET_C), ("ImageNet-W", P.IMAGENET_W)):
        for i, model in enumerate(P.MODELS):
            row = f"| {P.MODEL_NAMES[model]} | " + " | ".join(
                "-" if table[c][i] is None else f"{table[c][i]:.1f}" for c in table
            )
            assert row in text, f"README: the published {title} row of {model} differs from sda/eval/published.py"
    clean = re.search(r"[Cc]lean ImageNet.*?top-1[^:]*: ([0-9., ]+)", text)
    assert clean and [float(x) for x in clean.group(1).strip(" .").split(", ")] == list(P.CLEAN)
