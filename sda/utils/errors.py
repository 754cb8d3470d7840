"""The one exception type that entry points turn into a clean one-line message."""

from typing import Any


class UserError(Exception):
    """Bad input from the user: the message names the thing and the fix."""


def require_finite(x: Any, what: str) -> None:
    """A UserError when the tensor ``x`` (a model's output) holds a NaN or an infinity: a broken checkpoint would
    otherwise give black images or chance accuracy without a word. One reduction per batch."""
    if not bool(x.isfinite().all()):
        raise UserError(f"{what} produced non-finite values (NaN or inf); its weights are broken: fetch it again")
