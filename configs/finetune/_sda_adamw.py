# SDA Stage 3's recipe for Swin-T/B and ConvNeXt-T/B (the SDA repository's configs): mmpretrain's ImageNet
# AdamW recipe with what SDA changes. The model configs add the architecture and load_from.
_base_ = [
    # bicubic RandomResizedCrop 224, flip, RandAugment (2 policies, magnitude 9, std 0.5),
    # RandomErasing 0.25
    "mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py",
    "mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py",
    "mmpretrain::_base_/default_runtime.py",
]

# class-folder set: sorted folder names are the labels (0000 ... 0999)
data_root = "data/DiT-Syn"
train_dataloader = dict(
    batch_size=128,
    dataset=dict(_delete_=True, type="CustomDataset", data_root=data_root, pipeline={{_base_.train_pipeline}}),
)
# The reference validated on the training set itself every epoch; that changes nothing
# in the weights, so it is left out.
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None

# AdamW with no decay on norms, biases and position tables (from the base), SDA's small lr
optim_wrapper = dict(
    optimizer=dict(type="AdamW", lr=2e-5, weight_decay=1e-8, eps=1e-8, betas=(0.9, 0.999)), clip_grad=dict(max_norm=5.0)
)
param_scheduler = [
    # linear warm-up over 5 epochs, updated every iteration
    dict(type="LinearLR", start_factor=2e-8, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", eta_min=2e-7, by_epoch=True, begin=5),
]
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=1)
# The lr above is for 8 GPUs x 128; --auto-scale-lr rescales it for another total batch.
auto_scale_lr = dict(base_batch_size=1024, enable=False)

default_hooks = dict(checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=3))
