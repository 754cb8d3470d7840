# SDA Stage 4: evaluation of Swin-T (original and fine-tuned checkpoints share this config).
# The architecture is mmpretrain's, as in configs/finetune/SwinT.py; the official mmcls v0
# checkpoints load through sda.classifiers (key conversion included).
_base_ = ['mmpretrain::_base_/models/swin_transformer/tiny_224.py']

model = dict(train_cfg=None)

# PAPER.md Stage 4: short side 256 (PIL bicubic), center crop 224, normalize (RGB).
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
