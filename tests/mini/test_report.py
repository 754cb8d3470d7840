import json

import pytest
from PIL import Image

from sda.mini.report import (
    SUB_MEANS,
    aggregate,
    bar_chart,
    image_grid,
    markdown_table,
    study_figure,
    verdict,
    verdict_line,
    with_means,
)
from sda.utils.layout import CORRUPTIONS


def _res(seed, shift, sda_gain=3.0):
    cells = with_means({"gaussian_noise": 40.0 + shift, "fog": 60.0 + shift})
    offsets = {"source": 0.0, "projected": 1.0, "dda": 2.0, "sda": 2.0 + sda_gain, "sda_nomod": 3.0, "bn_adapt": 4.0}
    methods = {m: {k: v + o for k, v in cells.items()} for m, o in offsets.items()}
    return {
        "benchmark": "t",
        "seed": seed,
        "methods": methods,
        "tables": {"5": methods, "3": {m: {k: v + 10 for k, v in c.items()} for m, c in methods.items()}},
        "n_per_corruption": 10,
        "synthetic_accuracy": 95.0 + shift,
        "seconds": 100.0,
    }


def test_with_means_adds_complete_sub_means_only():
    full = with_means({c: float(i) for i, c in enumerate(CORRUPTIONS)})
    assert full["mean"] == 7.0
    for name, members in SUB_MEANS.items():
        assert full[name] == pytest.approx(sum(CORRUPTIONS.index(m) for m in members) / len(members))
    assert set(SUB_MEANS["recoverable"]) | set(SUB_MEANS["low_frequency"]) == set(CORRUPTIONS)
    assert set(with_means({"fog": 1.0, "snow": 3.0})) == {"fog", "snow", "mean"}


def test_aggregate_mean_and_std_of_every_table():
    mean, std = aggregate([_res(0, 0.0), _res(1, 2.0), _res(2, 4.0)])
    assert mean["methods"]["sda"]["fog"] == pytest.approx(65.0 + 2.0)
    assert std["methods"]["sda"]["fog"] == pytest.approx(2.0)  # sample std of 0, 2, 4
    assert mean["tables"]["3"]["sda"]["fog"] == pytest.approx(77.0) and std["tables"]["3"]["sda"]["mean"] == 2.0
    assert mean["synthetic_accuracy"] == pytest.approx(97.0)
    assert mean["seeds"] == [0, 1, 2]
    assert "seed" not in mean and mean["benchmark"] == "t"  # seed-specific fields are not carried over


def test_markdown_table_rows_and_columns():
    r = _res(0, 0.0)
    lines = markdown_table(r).splitlines()
    assert lines[0].startswith("| corruption | Source | Projected only | DDA (sum) | SDA | SDA w/o MoD | BN-adapt")
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["gaussian_noise", "fog", "**mean**"]
    assert "**55.0**" in lines[-1]  # sda mean: 50 + 5
    assert "**65.0**" in markdown_table(r, severity="3").splitlines()[-1]
    mean, std = aggregate([_res(0, 0.0), _res(1, 2.0)])
    assert "±" in markdown_table(mean, std) and "±" in markdown_table(mean, std, severity="3")


def test_verdict_rules():
    seeds = [_res(0, 0.0, 3.0), _res(1, 1.0, 3.2), _res(2, 2.0, 2.8)]
    v = verdict(seeds, premise=True)
    assert v["status"] == "reproduced at this scale"
    assert v["sda_minus_dda"] == pytest.approx(3.0) and v["threshold"] == pytest.approx(2.0)  # 2 x std(sda)=1
    assert verdict(seeds, premise=False)["status"] == "premise absent"
    small = [_res(0, 0.0, 0.8), _res(1, 0.0, 0.9)]  # below the 1-point floor
    v = verdict(small, premise=True)
    assert v["status"] == "not reproduced" and not v["conditions"]["sda_minus_dda_above_threshold"]
    noisy = [_res(0, 0.0, 3.0), _res(1, 0.0, 9.0)]  # gain 6 but seed std of the gain 4.2 -> threshold 8.5
    assert verdict(noisy, premise=True)["status"] == "not reproduced"
    beaten = [_res(0, 0.0, 3.0)]
    beaten[0]["methods"]["bn_adapt"]["mean"] = 99.0
    v = verdict(beaten, premise=True)
    assert v["status"] == "not reproduced" and not v["conditions"]["sda_beats_bn_adapt"]
    assert "NOT REPRODUCED" in verdict_line(v) and "1 seed" in verdict_line(v)


def test_figures(tmp_path):
    r = _res(0, 0.0)
    r["methods"] = {m: with_means({c: 50.0 for c in CORRUPTIONS}) for m in r["methods"]}
    bar_chart(r, tmp_path / "bars.png", "t")
    assert Image.open(tmp_path / "bars.png").size[0] > 500
    for i in range(3):
        Image.new("RGB", (32, 32), (i * 80, 0, 0)).save(tmp_path / f"{i}.png")
    rows = [[tmp_path / "0.png", tmp_path / "1.png"], [tmp_path / "2.png", tmp_path / "0.png"]]
    image_grid(rows, tmp_path / "g.png", ["row a", "row b"], [("raw", 1), ("projected", 1)], cell=16, pad=2)
    g = Image.open(tmp_path / "g.png")
    assert g.size[0] > 2 * 18 + 2 and g.size[1] > 2 * 18 + 2  # room for the labels
    with pytest.raises(ValueError, match="row labels"):
        image_grid(rows, tmp_path / "x.png", ["only one"], [("raw", 2)])
    with pytest.raises(ValueError, match="column groups"):
        image_grid(rows, tmp_path / "x.png", ["a", "b"], [("raw", 1)])
    json.dumps(_res(0, 0.0))


def _row(phase, per_class, generator, value, cfg=8.0):
    from sda.mini.study import TrainSet

    train = {"per_class": per_class, "generator": generator, "cfg_scale": cfg, "seed": 0}
    d = {"value": value, "lo": value - 1.0, "hi": value + 1.0}
    return {
        "phase": phase,
        "recipe": {"lr": 0.02, "epochs": 40, "trainable": "all"},
        "train": train,
        "set": TrainSet(**train).name,
        "sda_minus_dda": d,
    }


def test_study_figure_draws_every_set_of_the_chosen_recipe(tmp_path, monkeypatch):
    """The study figure: SDA - DDA against size (the phase-1 row counts as the smallest size) and against
    gate (g), the oracle, and the powered test's point; a row of another recipe is not drawn."""
    import matplotlib.axes

    rows = {
        "syn-bundled-cfg8-2__lr0.02-ep40": _row("strength", 2, "bundled", 1.0),
        "syn-bundled-cfg8-2__lr0.05-ep40": _row("strength", 2, "bundled", 9.0) | {"recipe": {"lr": 0.05}},
        "syn-bundled-cfg8-3__lr0.02-ep40": _row("size", 3, "bundled", 2.0),
        "real2__lr0.02-ep40": _row("size", 2, None, 3.0),
        "real3__lr0.02-ep40": _row("size", 3, None, 4.0),
        "syn-bundled-cfg4-2__lr0.02-ep40": _row("generator", 2, "bundled", 0.5, cfg=4.0),
    }
    g = {"fd": 0.5, "fd_real": 0.1}
    study = {
        "rows": rows,
        "sets": {r["set"]: {"g": g} for r in rows.values() if r["train"]["generator"]},
        "choices": {"recipe": {"lr": 0.02, "epochs": 40, "trainable": "all"}, "per_class": 2},
    }
    powered = {
        "differences": {"sda-dda": {"value": 1.5, "lo": 0.5, "hi": 2.5}},
        "settings": {"train": {"per_class": 2}},
    }
    drawn = []
    real_errorbar = matplotlib.axes.Axes.errorbar

    def spy(self, x, y, *a, **kw):
        drawn.append((kw.get("label"), list(x), list(y)))
        return real_errorbar(self, x, y, *a, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy)
    study_figure(study, powered, tmp_path / "s.png", "t")
    assert Image.open(tmp_path / "s.png").size[0] > 800
    by_label = {label.split(" (")[0].split(",")[0]: (x, y) for label, x, y in drawn}
    assert by_label["SDA: aligned synthetic set"] == ([2, 3], [1.0, 2.0])
    assert by_label["Oracle: projected real set"] == ([2, 3], [3.0, 4.0])
    assert by_label["SDA"] == ([2], [1.5])  # the powered test's point
    assert sorted(by_label["synthetic sets"][1]) == [0.5, 2.0]  # the size phase's 3 and phase 3's row
    assert all(9.0 not in y for _, _, y in drawn)  # the other recipe
