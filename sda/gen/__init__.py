"""Stage 1 (gen): a labelled synthetic set from a class-conditional DiT (or ADM).

``GenConfig`` (settings and flags) -> ``build_sampler`` (models) -> ``generate`` (the resumable, sharded run).
"""

from sda.gen.config import GenConfig
from sda.gen.runner import generate

__all__ = ["GenConfig", "generate"]
