# The glyphs32 source classifier: the tiny model of configs/finetune/TinyResNet.py (ResNet_CIFAR-18, width 8,
# 0.18M parameters) trained from scratch on the clean glyphs32 train split (3,000 images), 30 epochs.
# Batch 64 and lr 0.1 instead of the digits' 32 / 0.05: with 32 / 0.05 a run on glyphs32 sat at chance for
# 8 epochs and ended at 24% val accuracy; 64 / 0.1 reached 93% in 12 epochs (validation split).
_base_ = ["../../finetune/TinyResNet.py"]

load_from = None
train_dataloader = dict(batch_size=64, dataset=dict(data_root="data/mini/glyphs32/train"))
optim_wrapper = dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=True, end=1, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", eta_min=0.0, by_epoch=True, begin=1),
]
train_cfg = dict(by_epoch=True, max_epochs=30)
