"""The mini benchmarks: what each is, where its configs, source models and data live, and its demo settings.

    glyphs32   textured digit glyphs at 32 px (``sda.mini.glyphs``): SDA's premise holds (the default)
    digits     scikit-learn's 8x8 digits at 32 px (``sda.mini.digits``): the premise-absent control

Layout of benchmark ``<name>``::

    sda/mini/configs/<name>/{adm_uncond.json, adm_cond.json, classifier_scratch.py}   how the sources are trained
    sda/mini/assets/<name>/{adm_uncond.pt, adm_cond.pt, classifier.pth, oracle.pth, classifier_lowpass.pth,
                        MANIFEST.json}                                              the bundled source models
    assets/mini/<name>/   the same files, retrained (``mini/train_sources.py``, ``--retrain-sources``; never the
                          bundled folder, which a run only reads)
    data/mini/<name>/{train,val,test}/<class:04d>/*.png + split.json                made on first use

Every setting below was chosen on the benchmark's validation split (never on its test split).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sda.models.adm_flags import flags_of
from sda.utils.errors import UserError
from sda.utils.io import atomic_write

# The benchmarks' configs and bundled models are package data (found the same from a checkout, an editable
# install or a wheel); data and results go where the user runs (the current directory, or --data / --out).
MINI = Path(str(resources.files("sda.mini")))
CLASSIFIER_CONFIG = str(MINI / "configs" / "TinyResNet.py")  # the source classifier's architecture and recipe
# The bundled models of every benchmark (in its assets folder): the projector, the generator, the source
# classifier, the oracle of gate (d) (the source fine-tuned on projected real train images) and the
# classifier of gate (e) (trained from scratch on low-passed train images).
SOURCE_MODELS = ("adm_uncond.pt", "adm_cond.pt", "classifier.pth", "oracle.pth", "classifier_lowpass.pth")


@dataclass(frozen=True)
class Settings:
    """A benchmark's demo settings (chosen on its validation split)."""

    images_per_class: int = 15  # the synthetic set
    sampling_steps: int = 50  # respaced DDPM steps of the generator
    cfg_scale: float = 1.0  # its classifier-free guidance (1: none, as SDA samples DiT)
    respacing: int = 50  # DDA projection: respaced steps, noised to N, guidance scale, low-pass factor D
    N: int = 25
    D: int = 4
    scale: float = 6.0
    guidance_norm: str = "batch"  # the reference's batch-coupled norm ...
    align_batch: int = 10  # ... with the reference's batch size
    test_per_class: int = 4  # target-test subset: images per class, corruption and severity
    val_per_class: int = 2  # val-C subset (picks the control ensemble; gate b)
    val_clean_per_class: int = 10  # clean val subset projected for gates (c) and (d)
    severities: tuple[int, ...] = (5, 3)  # the first is the main table
    # DiffPure as DDA's author ran it on ImageNet-C (align --guidance sde): the reverse VP-SDE from t* = 150 of the
    # 1000-step schedule; its Euler-Maruyama step 0.001 (150 forwards) is 0.01 here (15 forwards, the cost the mini
    # DiffPure column had with DiffPure's DDPM runner on 15 of 100 respaced steps)
    diffpure_N: int = 150
    diffpure_dt: float = 0.01
    finetune_epochs: int | None = None  # None: the recipe's own
    tta: tuple[str, ...] = ("norm", "tent", "memo")  # the adaptation controls (eval --tta)
    memo_views: int = 64
    # test-time BN and TENT batches: TENT is an online stream that predicts each batch before it updates, so one
    # batch per corruption (ImageNet's 64 >= the 40 test images here) would make it equal test-time BN
    tta_batch: int = 10


@dataclass(frozen=True)
class Gates:
    """Thresholds of the premise gates (the same for every benchmark; see ``sda.mini.gates``)."""

    a_min_class: float = 80.0  # (a) source on raw generator samples, every class (%)
    c_min_gap: float = 5.0  # (c) clean minus projected clean (points)
    d_min_recovered: float = 0.5  # (d) share of (c)'s gap the oracle wins back
    e_min_ratio: float = 0.9  # (e) low-pass classifier on low-passed val / source on clean val
    f_min_diff: float = -1.0  # (f) fine-tuned model alone minus the source, both on projected clean val (points)
    g_max_fd_ratio: float = 2.0  # (g) FD(aligned synthetic, projected val) / FD(projected real train, same)


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    prepare: Callable[[Path, int], dict[str, Any]]  # (out, seed) -> split summary; writes out/split.json
    settings: Settings
    quick: Settings
    oracle_train_per_class: int  # real train images per class projected to train the oracle of gate (d)
    lowpass_epochs: int  # epochs of the gate (e) classifier (from scratch, classifier_scratch.py otherwise)
    finetune_config: str = CLASSIFIER_CONFIG  # the fine-tuning recipe of SDA, its ablation and the oracle
    gates: Gates = field(default_factory=Gates)

    @property
    def configs(self) -> Path:
        return MINI / "configs" / self.name

    @property
    def assets(self) -> Path:
        return MINI / "assets" / self.name

    @property
    def retrained(self) -> Path:
        """Where retrained source models go by default: under the folder the command runs in."""
        return Path("assets/mini") / self.name

    @property
    def data(self) -> Path:
        return Path("data/mini") / self.name

    def adm_config_path(self, which: str) -> Path:
        """``sda/mini/configs/<name>/adm_<which>.json`` (which: "cond" or "uncond")."""
        return self.configs / f"adm_{which}.json"

    def adm_config(self, which: str) -> dict[str, Any]:
        """An ADM config file: model and diffusion flags plus training settings."""
        return json.loads(self.adm_config_path(which).read_text())

    def adm_model_flags(self, which: str) -> dict[str, Any]:
        """The model and diffusion flags of an ADM config, without its training settings."""
        return flags_of(self.adm_config(which))

    def adm_flags(self, which: str) -> list[str]:
        """guided-diffusion style flags (``--num_channels 32 ...``) of an ADM config."""
        return [a for k, v in self.adm_model_flags(which).items() for a in (f"--{k}", str(v))]

    @property
    def classifier_scratch(self) -> Path:
        return self.configs / "classifier_scratch.py"

    def config_files(self) -> list[Path]:
        """Every config the benchmark's results depend on (the scratch recipe's shared base among them)."""
        paths = [self.adm_config_path("uncond"), self.adm_config_path("cond"), self.classifier_scratch]
        paths.append(MINI / "configs" / "classifier_scratch.py")
        return paths + sorted({Path(CLASSIFIER_CONFIG), Path(self.finetune_config)})

    def record_name(self, path: Path) -> str:
        """A config's or asset's name in records (run keys, manifests): its path inside the package."""
        return path.relative_to(MINI.parent.parent).as_posix()


def _prepare_digits(out: Path, seed: int) -> dict[str, Any]:
    from sda.mini.digits import prepare_digits

    return prepare_digits(out, seed=seed)


def _prepare_glyphs(out: Path, seed: int) -> dict[str, Any]:
    from sda.mini.glyphs import write_glyphs32

    return write_glyphs32(out, seed=seed)


_QUICK = dict(
    images_per_class=3, sampling_steps=10, respacing=10, N=5, test_per_class=1, val_per_class=1, val_clean_per_class=1
)
_QUICK_TAIL = dict(diffpure_dt=0.075, finetune_epochs=2, memo_views=4, tta_batch=4)

BENCHMARKS: dict[str, Benchmark] = {
    "glyphs32": Benchmark(
        name="glyphs32",
        description="glyphs32 (textured digit glyphs, 32 px; CIFAR-10-C severity profile)",
        prepare=_prepare_glyphs,
        settings=Settings(images_per_class=30, cfg_scale=8.0, D=2, N=25, scale=6.0, test_per_class=3),
        quick=Settings(cfg_scale=8.0, D=2, scale=6.0, **_QUICK, **_QUICK_TAIL),
        oracle_train_per_class=150,
        lowpass_epochs=30,
        finetune_config=str(MINI / "configs" / "glyphs32" / "finetune.py"),
    ),
    "digits": Benchmark(
        name="digits",
        description="digits-32px-C (sklearn digits, CIFAR-10-C severity profile)",
        prepare=_prepare_digits,
        settings=Settings(images_per_class=20, D=4, N=25, scale=6.0, test_per_class=3),
        quick=Settings(D=4, scale=6.0, **_QUICK, **_QUICK_TAIL),
        oracle_train_per_class=50,
        lowpass_epochs=50,
    ),
}
DEFAULT_BENCHMARK = "glyphs32"


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UserError(f"unknown mini benchmark {name!r}: choose one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def seed_assets(bench: Benchmark, assets: Path) -> list[str]:
    """Start a folder of retrained source models from the bundled ones: copy each bundled model (and the
    manifest) that ``assets`` lacks, so that retraining some models keeps the others. Returns what was copied."""
    if assets.resolve() == bench.assets.resolve():
        return []
    assets.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in (*SOURCE_MODELS, "MANIFEST.json"):
        if not (assets / name).exists() and (bench.assets / name).is_file():
            with open(bench.assets / name, "rb") as src, atomic_write(assets / name) as dst:
                shutil.copyfileobj(src, dst)  # a killed copy never leaves a partial model under its real name
            copied.append(name)
    if copied:
        print(f"{assets}: started from the bundled {', '.join(copied)} ({bench.assets})", flush=True)
    return copied


def check_run(threads: int, written: dict[str, Path | None]) -> None:
    """The checks of a mini command before any work: at least one thread, and no output folder (``written``:
    flag name -> path, None for the default) inside the installed package, whose bundled models and configs a run
    must never overwrite (outputs go under the folder the command runs in)."""
    if threads < 1:
        raise UserError(f"--threads {threads}: use at least 1 (the number of stage jobs side by side)")
    package = Path(__file__).resolve().parents[1]  # the installed sda package
    for flag, path in written.items():
        if path is not None and Path(path).resolve().is_relative_to(package):
            raise UserError(
                f"--{flag} {path} is inside the installed package ({package}); choose a folder under the one "
                "you work in (the bundled models are read from there, never written)"
            )
