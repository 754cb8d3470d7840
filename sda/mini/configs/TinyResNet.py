# A tiny recipe for 32x32 images (tests, the mini benchmark): a narrow CIFAR-style ResNet-18
# (width 8, BatchNorm, 0.18M parameters) fine-tuned like ResNet50.py, scaled down so that it runs on a
# laptop CPU in seconds. The source models come from configs/mini/<benchmark>/classifier_scratch.py.
_base_ = ["mmpretrain::_base_/default_runtime.py"]

num_classes = 10
data_preprocessor = dict(
    num_classes=num_classes, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True
)
model = dict(
    type="ImageClassifier",
    backbone=dict(type="ResNet_CIFAR", depth=18, stem_channels=8, base_channels=8),
    neck=dict(type="GlobalAveragePooling"),
    head=dict(
        type="LinearClsHead",
        num_classes=num_classes,
        in_channels=64,
        loss=dict(type="CrossEntropyLoss", loss_weight=1.0),
    ),
)

load_from = "{{fileDirname}}/../assets/glyphs32/classifier.pth"  # the default mini benchmark's source model

# digits: no flips; small shifts instead of RandomResizedCrop
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(32, 32)),
    dict(type="RandomCrop", crop_size=32, padding=2),
    dict(type="PackInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(32, 32)),
    dict(type="PackInputs"),
]
data_root = "results/mini/glyphs32/seed0/DiT-Syn"
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    dataset=dict(type="CustomDataset", data_root=data_root, pipeline=train_pipeline),
    sampler=dict(type="DefaultSampler", shuffle=True),
)

optim_wrapper = dict(optimizer=dict(type="SGD", lr=5e-3, momentum=0.9, weight_decay=1e-4))
param_scheduler = dict(type="MultiStepLR", by_epoch=True, milestones=[4, 8, 10], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=12)
auto_scale_lr = dict(base_batch_size=64, enable=False)

default_hooks = dict(
    logger=dict(type="LoggerHook", interval=10), checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=2)
)
randomness = dict(seed=0)
