# SDA Stage 3: fine-tune ResNet-50 on the aligned synthetic set (8 GPUs x 64 images).
# mmpretrain's ImageNet recipe; what SDA changes is below the _base_ list.
_base_ = [
    "mmpretrain::_base_/models/resnet50.py",
    "mmpretrain::_base_/datasets/imagenet_bs32.py",  # RandomResizedCrop 224, flip
    "mmpretrain::_base_/schedules/imagenet_bs256.py",
    "mmpretrain::_base_/default_runtime.py",
]

# the official mmcls v0 ImageNet checkpoint (scripts/download_ckpt.sh); override with
# --cfg-options load_from=...
load_from = "pretrained_ckpt/resnet50_8xb32_in1k_20210831-ea4938fc.pth"

# class-folder set: sorted folder names are the labels (0000 ... 0999)
data_root = "data/DiT-Syn"
train_dataloader = dict(
    batch_size=64,
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

optim_wrapper = dict(optimizer=dict(type="SGD", lr=5e-4, momentum=0.9, weight_decay=1e-4))
param_scheduler = dict(type="MultiStepLR", by_epoch=True, milestones=[10, 20, 25], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=1)
# The lr above is for 8 GPUs x 64; --auto-scale-lr rescales it for another total batch.
auto_scale_lr = dict(base_batch_size=512, enable=False)

default_hooks = dict(checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=3))
