"""Command-line glue: a UserError becomes one line on stderr and exit code 2; flag parsing helpers."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sda.utils.errors import UserError


def run_main(main_fn: Callable[[], Any]) -> None:
    """Run ``main_fn``; turn a :class:`UserError` into ``error: ...`` and exit 2."""
    import warnings

    # the dependencies' import-time notices that say nothing about the run (mmengine, mmcv-lite)
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", message="Fail to import ``MultiScaleDeformableAttention``", category=UserWarning)
    try:
        main_fn()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept, rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


def str2bool(v: str | bool) -> bool:
    """Parse "True"/"False" (also yes/no, t/f, y/n, 1/0) as the reference scripts do."""
    if isinstance(v, bool):
        return v
    if v.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if v.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"boolean value expected, got {v!r} (use True or False)")


def add_flag_table(
    parser: argparse.ArgumentParser,
    flags: Mapping[str, Any],
    defaults: Mapping[str, Any],
    skip: Iterable[str] = (),
    help: Mapping[str, str] | None = None,
) -> None:
    """``--<name>`` for each entry of a flag table (name -> the reference's default; guided-diffusion's
    ``add_dict_to_argparser``) but ``skip``, defaulting to ``defaults``; booleans parse as its str2bool."""
    for name, default in flags.items():
        if name in skip:
            continue
        kind = str2bool if isinstance(default, bool) else type(default)
        parser.add_argument(f"--{name}", default=defaults.get(name, default), type=kind, help=(help or {}).get(name))


def int_list(text: str) -> list[int]:
    """``"5"`` or ``"1,2,3"`` -> a list of integers (an argparse type)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected integers like 5 or 1,2,3, got {text!r}") from e


def load_json_defaults(path: str | os.PathLike | None) -> dict[str, Any]:
    """Flag defaults from a JSON file ``{"flag_name": value, ...}`` (keys are argparse dest names).

    Keys starting with ``_`` (``"_comment"``) are notes and skipped.
    """
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config {path} not found")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"config {path} is not valid JSON ({e})") from e
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def parse_with_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse twice: the first pass finds ``--config`` (a JSON file), whose values become the defaults of the
    second; flags on the command line win. A config key that is no flag is a :class:`UserError`."""
    pre, _ = parser.parse_known_args(argv)
    cfg = load_json_defaults(pre.config)
    known = {a.dest for a in parser._actions}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise UserError(f"config {pre.config} has unknown keys {unknown}; use flag names such as {sorted(known)[:4]}")
    parser.set_defaults(**cfg)
    return parser.parse_args(argv)
