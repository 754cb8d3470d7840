"""The benchmark registry: every benchmark's configs exist and its settings are runnable."""

from __future__ import annotations

from pathlib import Path

import pytest

from sda.mini.benchmarks import BENCHMARKS, DEFAULT_BENCHMARK, get_benchmark
from sda.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_benchmark_names_the_choices():
    with pytest.raises(UserError, match="unknown mini benchmark 'cifar'.*glyphs32, digits"):
        get_benchmark("cifar")
    assert DEFAULT_BENCHMARK == "glyphs32"


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_configs_exist_and_settings_are_runnable(name):
    bench = get_benchmark(name)
    for path in bench.config_files():
        assert (ROOT / path).is_file(), path
    for s in (bench.settings, bench.quick):
        assert 32 % s.D == 0 and 1 <= s.N <= s.respacing and 0 <= s.diffpure_N <= s.diffpure_respacing
        assert s.severities[0] == 5 and set(s.severities) <= {1, 2, 3, 4, 5}
        assert set(s.tta) <= {"norm", "tent", "memo"}
    assert bench.quick.D == bench.settings.D and bench.quick.scale == bench.settings.scale  # quick = fewer, same knobs
