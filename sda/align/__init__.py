"""Stage 2 (align): DDA's guided projection into an unconditional ADM's synthetic domain.

``ProjectionConfig``/``AlignConfig`` (settings) -> ``projection`` (the math: ``project``) over
``lowpass`` (the LPF) -> ``layout`` (the D/C/W folders) -> ``runner`` (``project_folder``: exactly once,
resumable, any number of ranks; ``align`` runs it as the command line does).
"""

from sda.align.config import AlignConfig, ProjectionConfig
from sda.align.projection import prepare_model, project
from sda.align.runner import align, project_folder

__all__ = ["AlignConfig", "ProjectionConfig", "align", "prepare_model", "project", "project_folder"]
