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
        assert 32 % s.D == 0 and 1 <= s.N <= s.respacing and 0 < s.diffpure_N <= 1000 and 0 < s.diffpure_dt <= 0.1
        assert s.test_per_class * 10 > s.tta_batch  # TENT streams more than one batch per corruption
        assert s.severities[0] == 5 and set(s.severities) <= {1, 2, 3, 4, 5}
        assert set(s.tta) <= {"norm", "tent", "memo"}
    assert bench.quick.D == bench.settings.D and bench.quick.scale == bench.settings.scale  # quick = fewer, same knobs


@pytest.mark.parametrize("threads", [0, -2])
def test_a_run_needs_a_thread(threads):
    from sda.mini.pipeline import DemoRun

    with pytest.raises(UserError, match=f"--threads {threads}: use at least 1"):
        DemoRun(threads=threads)


def test_no_output_inside_the_installed_package():
    from sda.mini.pipeline import DemoRun
    from sda.mini.study import StudyRun

    bundled = get_benchmark("glyphs32").assets
    with pytest.raises(UserError, match="--out .* is inside the installed package"):
        DemoRun(out=bundled / "results")
    with pytest.raises(UserError, match="--data .* is inside the installed package"):
        StudyRun(data=bundled.parent)
    DemoRun(out=Path("results/mini/x"))  # under the working folder: fine
    with pytest.raises(UserError, match="--assets .* is inside the installed package"):
        DemoRun(assets=bundled, retrain_sources=True)


def test_the_demo_reads_the_bundled_models_and_retrains_elsewhere():
    from sda.mini.pipeline import DemoRun

    bench = get_benchmark("glyphs32")
    assert DemoRun().source_models == bench.assets  # read only
    assert DemoRun(retrain_sources=True).source_models == Path("assets/mini/glyphs32")
    assert DemoRun(assets=Path("mine"), retrain_sources=True).source_models == Path("mine")
