# SDA Stage 3: fine-tune Swin-B on the aligned synthetic set (8 GPUs x 128 images).
# The recipe (data, optimizer, schedule, runtime) is ./_sda_adamw.py; this file adds the model.
_base_ = ["mmpretrain::_base_/models/swin_transformer/base_224.py", "./_sda_adamw.py"]

# label smoothing 0.1 from the base; the reference's base sets drop path 0.2 (mmpretrain's
# own Swin-B base says 0.5); no Mixup/CutMix
model = dict(backbone=dict(drop_path_rate=0.2), train_cfg=None)

# the official mmcls v0 ImageNet checkpoint (scripts/download_ckpt.sh); override with
# --cfg-options load_from=...
load_from = "pretrained_ckpt/swin_base_224_b16x64_300e_imagenet_20210616_190742-93230b0d.pth"
