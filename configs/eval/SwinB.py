# SDA Stage 4: evaluation of Swin-B (original and fine-tuned checkpoints share this config).
# The architecture is mmpretrain's, as in configs/finetune/SwinB.py; the official mmcls v0
# checkpoints load through sda.finetune.classifiers (key conversion included).
_base_ = ["mmpretrain::_base_/models/swin_transformer/base_224.py", "./_sda_test.py"]

model = dict(train_cfg=None)
