"""Pieces of sda.eval: top-k ranks, exact gathering, mode parsing, pairing."""

import numpy as np
import pytest
import torch
from PIL import Image

from sda.eval import config, ensemble, pairs, scoring
from sda.utils.errors import UserError


def test_label_rank_is_topk_position():
    s = torch.tensor([[0.1, 0.5, 0.2, 0.05, 0.05, 0.04, 0.06], [0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2]])
    # row 0: order 1, 2, 0, 6, {3,4}, 5 -> label 0 at position 2; row 1: label 6 at position 1
    assert scoring._label_rank(s, torch.tensor([0, 6]), 5).tolist() == [2, 1]
    # label 5 of row 0 (the smallest score) is outside the top 5 -> k
    assert scoring._label_rank(s, torch.tensor([5, 0]), 5).tolist() == [5, 0]


def test_merge_parts_exact_and_rejects_duplicates():
    a = {"index": np.array([0, 2, 4]), "rank/sum": np.array([0, 1, 2], np.uint8)}
    b = {"index": np.array([1, 3]), "rank/sum": np.array([3, 4], np.uint8)}
    m = scoring.merge_parts([a, b], 5)
    assert m["index"].tolist() == [0, 1, 2, 3, 4] and m["rank/sum"].tolist() == [0, 3, 1, 4, 2]
    padded = {"index": np.array([1, 3, 0]), "rank/sum": np.array([3, 4, 0], np.uint8)}  # a padded duplicate
    with pytest.raises(RuntimeError, match="duplicates or gaps"):
        scoring.merge_parts([a, padded], 5)


def test_parse_modes():
    assert config.parse_modes("sda, sum,first") == ["sda", "sum", "first"]
    assert config.parse_modes("all") == list(ensemble.MODES)
    with pytest.raises(UserError, match="valid: all, sda"):
        config.parse_modes("sda,avg")
    assert not config.needs_projection(["first"]) and config.needs_projection(["first", "sum"])


def test_pair_images_names_missing_and_extra(tmp_path):
    for tree, names in (("raw", ["a/1.png", "a/2.png", "b/3.png"]), ("proj", ["a/1.png", "b/3.png", "b/9.png"])):
        for n in names:
            (tmp_path / tree / n).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 4)).save(tmp_path / tree / n)
    with pytest.raises(UserError, match=r"1 raw images have no projection .*a/2\.png.*b/9\.png.*--allow-missing"):
        pairs.pair_images(tmp_path / "raw", tmp_path / "proj")
    rels, counts = pairs.pair_images(tmp_path / "raw", tmp_path / "proj", allow_missing=True)
    assert rels == ["a/1.png", "b/3.png"]
    assert counts == {"raw": 3, "projected": 3, "missing": 1, "extra": 1, "paired": 2}
    with pytest.raises(UserError, match="does not exist"):
        pairs.build_subsets("W", pairs.Roots(tmp_path / "nowhere"))
