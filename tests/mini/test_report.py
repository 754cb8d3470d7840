import json

import pytest
from PIL import Image

from sda.mini.report import aggregate, bar_chart, image_grid, markdown_table


def _res(seed, shift):
    cells = {"gaussian_noise": 40.0 + shift, "fog": 60.0 + shift}
    cells["mean"] = (cells["gaussian_noise"] + cells["fog"]) / 2
    methods = {m: {k: v + i for k, v in cells.items()} for i, m in enumerate(["source", "projected", "dda", "sda"])}
    return {
        "benchmark": "t",
        "seed": seed,
        "methods": methods,
        "n_per_corruption": 10,
        "synthetic_accuracy": 95.0 + shift,
        "seconds": 100.0,
    }


def test_aggregate_mean_and_std():
    mean, std = aggregate([_res(0, 0.0), _res(1, 2.0), _res(2, 4.0)])
    assert mean["methods"]["sda"]["fog"] == pytest.approx(63.0 + 2.0)
    assert std["sda"]["fog"] == pytest.approx(2.0)  # sample std of 0, 2, 4
    assert mean["synthetic_accuracy"] == pytest.approx(97.0)
    assert mean["seeds"] == [0, 1, 2]
    assert "seed" not in mean and mean["benchmark"] == "t"  # seed-specific fields are not carried over


def test_markdown_table_rows_and_columns():
    r = _res(0, 0.0)
    text = markdown_table(r)
    lines = text.splitlines()
    assert lines[0].startswith("| corruption | Source | Projected only | DDA (sum) | SDA |")
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["gaussian_noise", "fog", "**mean**"]
    assert "**53.0**" in lines[-1]  # sda mean: 50 + 3
    mean, std = aggregate([_res(0, 0.0), _res(1, 2.0)])
    assert "±" in markdown_table(mean, std)


def test_figures(tmp_path):
    bar_chart(_res(0, 0.0), tmp_path / "bars.png", "t")
    assert Image.open(tmp_path / "bars.png").size[0] > 500
    for i in range(3):
        Image.new("RGB", (32, 32), (i * 80, 0, 0)).save(tmp_path / f"{i}.png")
    image_grid([[tmp_path / "0.png", tmp_path / "1.png"], [tmp_path / "2.png"]], tmp_path / "g.png", cell=16, pad=2)
    g = Image.open(tmp_path / "g.png")
    assert g.size == (2 * 18 + 2, 2 * 18 + 2)
    assert g.getpixel((2 + 18 + 5, 2 + 5)) == (80, 0, 0)
    json.dumps(_res(0, 0.0))
