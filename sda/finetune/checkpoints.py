"""mmengine glue for Stage 3: safe checkpoint loading and a strict, v0-aware ``load_from`` / ``--resume``.

mmengine 0.10 calls ``torch.load`` without ``weights_only``; torch >= 2.6 then refuses the message-hub
objects of its own checkpoints. Here mmengine's loading of local files goes through
``sda.utils.checkpoint.safe_load`` (arbitrary pickles still need ``--allow-pickle``), and the training
checkpoints this project writes store the message hub as plain arrays, so they load with ``weights_only``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from sda.finetune.classifiers import convert_v0_state_dict, safe_load_classifier
from sda.utils.checkpoint import extract_state_dict, load_state_dict_strict


# ---------------------------------------------------------------------------------------------
def install_safe_checkpoint_loading(allow_pickle: bool = False) -> None:
    """Route mmengine's loading of local checkpoints (``load_from``, resume) through ``safe_load``.

    mmengine 0.10 calls ``torch.load`` without ``weights_only``; torch >= 2.6 then refuses the
    message-hub objects of its own checkpoints. Arbitrary pickles still need ``allow_pickle``.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    def load_local(filename: str, map_location: Any = None) -> Any:
        return safe_load_classifier(os.path.expanduser(filename), allow_pickle=allow_pickle, map_location=map_location)

    CheckpointLoader.register_scheme(prefixes="", loader=load_local, force=True)


_BUFFER_TAG = "__history_buffer__"


def _plain_message_hub(hub: dict) -> dict:
    """mmengine's message-hub state with each HistoryBuffer as a plain dict of arrays.

    A pickled HistoryBuffer holds bound methods (``getattr`` globals), which no safe loader may
    accept; plain arrays load with ``weights_only=True``.
    """
    scalars = {}
    for key, buf in hub.get("log_scalars", {}).items():
        if hasattr(buf, "_log_history"):
            buf = {
                _BUFFER_TAG: True,
                "log_history": buf._log_history,
                "count_history": buf._count_history,
                "max_length": buf.max_length,
            }
        scalars[key] = buf
    return {**hub, "log_scalars": scalars}


def _restore_message_hub(hub: dict) -> dict:
    from mmengine.logging import HistoryBuffer

    scalars = {}
    for key, buf in hub.get("log_scalars", {}).items():
        if isinstance(buf, Mapping) and buf.get(_BUFFER_TAG):
            buf = HistoryBuffer(list(buf["log_history"]), list(buf["count_history"]), int(buf["max_length"]))
        scalars[key] = buf
    return {**hub, "log_scalars": scalars}


def safe_checkpoint_hook() -> Any:
    """An mmengine hook that keeps training checkpoints safe to load and loads them strictly.

    - before saving: the message hub is stored as plain arrays (loadable with ``weights_only``);
    - after loading (``load_from`` or ``--resume``): HistoryBuffers are restored, mmcls v0 keys are
      converted, and a checkpoint that does not fit the model raises a :class:`UserError` listing
      the missing / unexpected keys and shape mismatches (mmengine alone only logs them).
    """
    from mmengine.hooks import Hook
    from mmengine.model import is_model_wrapper

    class SafeCheckpointHook(Hook):
        priority = "VERY_HIGH"

        def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
            if isinstance(checkpoint.get("message_hub"), Mapping):
                checkpoint["message_hub"] = _plain_message_hub(checkpoint["message_hub"])

        def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
            if isinstance(checkpoint.get("message_hub"), Mapping):
                checkpoint["message_hub"] = _restore_message_hub(checkpoint["message_hub"])
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            sd = convert_v0_state_dict(extract_state_dict(checkpoint, keys=("state_dict", "model")))
            what = f"checkpoint {getattr(runner, '_load_from', None) or '(load_from / --resume)'}"
            load_state_dict_strict(model, sd, what)
            checkpoint["state_dict"] = sd

    return SafeCheckpointHook()
