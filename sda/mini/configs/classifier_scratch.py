# The mini benchmarks' source classifiers: the tiny model of TinyResNet.py (ResNet_CIFAR-18, width 8, 0.18M
# parameters) trained from scratch on a benchmark's clean train split: SGD with momentum and weight decay, one
# epoch of linear warm-up, then cosine. Each benchmark's classifier_scratch.py sets its data, batch, lr and epochs.
_base_ = ["TinyResNet.py"]

load_from = None
optim_wrapper = dict(optimizer=dict(type="SGD", momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=True, end=1, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", eta_min=0.0, by_epoch=True, begin=1),
]
