"""Entry-point glue: a UserError becomes one line on stderr and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from sda.utils.errors import UserError


def run_main(main_fn: Callable[[], Any]) -> None:
    """Run ``main_fn``; turn a :class:`UserError` into ``error: ...`` and exit 2."""
    try:
        main_fn()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept, rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
