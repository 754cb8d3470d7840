"""The target-set facts every stage shares: ImageNet-C's corruption names and severities.

Named once here; align, eval, the ``-C`` builder, the scripts' defaults and the mini benchmark read them
from this module. ``parse_corruptions`` / ``parse_severities`` are the one place a user's list is checked.
"""

from __future__ import annotations

from collections.abc import Sequence

from sda.utils.errors import UserError

# ImageNet-C's 15 corruptions in the order of its paper's tables (hendrycks/robustness).
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
NOISE_CORRUPTIONS: tuple[str, ...] = CORRUPTIONS[:3]
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)


def parse_corruptions(value: str | Sequence[str] | None) -> list[str]:
    """``"all"`` -> the 15; ``"a,b"`` or ``["a", "b"]`` -> ``[a, b]`` (unique, in the given order).

    An empty value or an unknown name is a :class:`UserError` naming the valid ones.
    """
    names = value.split(",") if isinstance(value, str) else list(value or [])
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise UserError("no corruption given; pass a name, a comma list or 'all'")
    out: list[str] = []
    for n in names:
        if n == "all":
            out.extend(c for c in CORRUPTIONS if c not in out)
        elif n not in CORRUPTIONS:
            raise UserError(f"unknown corruption {n!r}; valid names: all, {', '.join(CORRUPTIONS)}")
        elif n not in out:
            out.append(n)
    return out


def parse_severities(value: str | int | Sequence[int]) -> list[int]:
    """``5``, ``"5"``, ``"3,5"`` or ``[3, 5]`` -> ``[3, 5]``; every severity must be in 1..5."""
    if isinstance(value, int):
        values = [value]
    elif isinstance(value, str):
        try:
            values = [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"bad severity {value!r}: use integers 1-5, e.g. 5 or 3,5") from None
    else:
        values = [int(v) for v in value]
    if not values or any(v not in SEVERITIES for v in values):
        raise UserError(f"bad severity {value!r}: use integers 1-5, e.g. 5 or 3,5")
    return values
