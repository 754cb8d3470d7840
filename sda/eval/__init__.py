"""Stage 4 (eval): score raw and projected target sets with the SDA / DDA ensembles; build -C and -W sets.

``config`` (``EvalConfig``, flags, modes) -> ``pairs`` (subsets paired by path) -> ``scoring`` (one forward
per model and image, ``ensemble``'s modes) -> ``tables`` (reports); ``runner.evaluate`` runs it end to end.
``corruptions`` (ImageNet-C's math) and ``builders`` (the ``-C`` / ``-W`` set builders) make target sets.
"""

from sda.eval.config import EvalConfig
from sda.eval.runner import evaluate

__all__ = ["EvalConfig", "evaluate"]
