"""The wheelhouse that carries the GPU check's missing packages to a lent machine with no package registry.

    python benchmarks/device_wheels.py build                       # here: pure-Python wheels into .whl/
    python3 benchmarks/device_wheels.py install --target DIR       # there (device_run.sh): offline, only the missing

The lent machine's image has Python 3.12, torch, numpy, matplotlib, opencv-python-headless, pyyaml, rich,
einops, huggingface-hub, ... but not diffusers, the OpenMMLab packages or resize-right, and its setuptools may be
81 or newer (no ``pkg_resources``, which mmengine imports). ``build`` downloads, for CPython 3.12 on
manylinux x86-64, the versions this project's ``pyproject.toml`` asks for (``TOP``) plus their small
dependencies that the image lacks (``DEPS``), without their other dependencies, writes ``.whl/requirements.txt``
(one requirement per wheel) and lists any dependency that neither the wheelhouse nor the image provides.
``install`` installs, with ``pip --no-index --no-deps``, each wheel whose requirement the running Python does
not already satisfy, into ``--target`` (put it first on ``PYTHONPATH``). About 10 MB in all.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".whl"
TOP = ("diffusers", "mmengine", "mmcv-lite", "mmpretrain", "resize-right", "setuptools")  # specs from pyproject
DEPS = (
    "addict",
    "yapf",
    "platformdirs",
    "termcolor",
    "importlib-metadata",
    "lazy-importer",
    "mat4py",
    "model-index",
    "modelindex",
    "ordered-set",
)
# What the lent machine's image already holds, of what these wheels need (the device tool's package list);
# opencv-python stands for the image's opencv-python-headless, which provides the same cv2.
IMAGE_HAS = {
    "click", "einops", "filelock", "huggingface-hub", "markdown", "matplotlib", "numpy", "opencv-python",
    "packaging", "pillow", "pyyaml", "regex", "requests", "rich", "safetensors", "zipp",
}  # fmt: skip
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_specs() -> dict[str, str]:
    """``TOP``'s requirement strings as pyproject.toml states them (the one place their versions live)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    by_name = {normalize(re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0]): d for d in deps}
    return {n: by_name[n] for n in TOP}


def wheel_name(path: Path) -> tuple[str, str]:
    """(normalised project name, version) from a wheel's file name."""
    name, version = path.name.split("-")[:2]
    return normalize(name), version


def requires(path: Path) -> set[str]:
    """The unconditional and Python-3.12 dependencies a wheel declares (extras left out)."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    out = set()
    for line in lines:
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            env = {"python_version": "3.12", "python_full_version": "3.12.3", "extra": ""}
            if req.marker is None or req.marker.evaluate(env):
                out.add(normalize(req.name))
    return out


def build(dest: Path) -> int:
    specs = {**pyproject_specs(), **{n: n for n in DEPS}}
    dest.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12"]
    cmd += ["--implementation", "cp", *(a for p in PLATFORMS for a in ("--platform", p)), "-d", str(dest)]
    subprocess.run([*cmd, *specs.values()], check=True)
    wheels = {wheel_name(p)[0]: p for p in sorted(dest.glob("*.whl"))}
    missing = sorted(set(specs) - set(wheels))
    (dest / "requirements.txt").write_text("".join(f"{specs[n]}\n" for n in specs if n in wheels))
    uncovered = sorted({r for p in wheels.values() for r in requires(p)} - set(wheels) - IMAGE_HAS)
    size = sum(p.stat().st_size for p in wheels.values()) / 2**20
    print(f"{len(wheels)} wheels, {size:.1f} MiB in {dest}; carry '{dest.name}' (README, 'GPU check')")
    if missing or uncovered:
        print(f"error: no wheel for {missing}; needed but neither carried nor on the image: {uncovered}")
        return 1
    return 0


def to_install(wheels: Path) -> list[Path]:
    """The carried wheels whose requirement the running Python does not satisfy."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    reqs = [Requirement(line) for line in (wheels / "requirements.txt").read_text().splitlines() if line.strip()]
    by_name = {wheel_name(p)[0]: p for p in wheels.glob("*.whl")}
    out = []
    for req in reqs:
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            have = None
        if have is None or not req.specifier.contains(have, prereleases=True):
            out.append(by_name[normalize(req.name)])
    return out


def install(wheels: Path, target: Path) -> int:
    chosen = to_install(wheels)
    print(f"installing {len(chosen)} carried wheels: {' '.join(p.name for p in chosen) or '(none missing)'}")
    if not chosen:
        return 0
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    cmd += ["--no-cache-dir", "--upgrade", "--target", str(target), *map(str, chosen)]
    return subprocess.run(cmd).returncode


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["build", "install"])
    p.add_argument("--wheels", type=Path, default=WHEELS, help="the wheelhouse (default .whl in the checkout)")
    p.add_argument("--target", type=Path, help="install: the folder to put first on PYTHONPATH")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.action == "build":
        return build(args.wheels)
    if args.target is None:
        p.error("install needs --target")
    return install(args.wheels, args.target)


if __name__ == "__main__":
    sys.exit(main())
