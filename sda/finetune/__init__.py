"""Stage 3 (finetune): MMPreTrain classifiers on the aligned synthetic set, and the BN-adapt control.

``classifiers`` (configs, official v0 checkpoints, the input normalization), ``checkpoints`` (mmengine's
loading made safe and strict), ``config`` (``FinetuneConfig``, ``BNAdaptConfig``), ``runner`` (-> ``finetune``),
``bn_adapt``.
"""
