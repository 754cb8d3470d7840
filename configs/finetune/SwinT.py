# SDA Stage 3: fine-tune Swin-T on the aligned synthetic set (8 GPUs x 128 images).
# The recipe (data, optimizer, schedule, runtime) is ./_sda_adamw.py; this file adds the model.
_base_ = ["mmpretrain::_base_/models/swin_transformer/tiny_224.py", "./_sda_adamw.py"]

# label smoothing 0.1 and drop path 0.2 come from the base; no Mixup/CutMix
model = dict(train_cfg=None)

# the official mmcls v0 ImageNet checkpoint (scripts/download_ckpt.sh); override with
# --cfg-options load_from=...
load_from = "pretrained_ckpt/swin_tiny_224_b16x64_300e_imagenet_20210616_090925-66df6be6.pth"
