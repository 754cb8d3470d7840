# The glyphs32 source classifier: the tiny model of configs/finetune/TinyResNet.py (ResNet_CIFAR-18, width 8,
# 0.18M parameters) trained from scratch on the clean glyphs32 train split (3,000 images), 30 epochs.
# Batch 64 and lr 0.1 instead of the digits' 32 / 0.05: with 32 / 0.05 a run on glyphs32 sat at chance for
# 8 epochs and ended at 24% val accuracy; 64 / 0.1 reached 93% in 12 epochs (validation split).
_base_ = ["../classifier_scratch.py"]

train_dataloader = dict(batch_size=64, dataset=dict(data_root="data/mini/glyphs32/train"))
optim_wrapper = dict(optimizer=dict(lr=0.1))
train_cfg = dict(by_epoch=True, max_epochs=30)
