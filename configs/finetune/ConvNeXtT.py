# SDA Stage 3: fine-tune ConvNeXt-T on the aligned synthetic set (8 GPUs x 128 images).
# The recipe (data, optimizer, schedule, runtime) is ./_sda_adamw.py; this file adds the model.
_base_ = ["mmpretrain::_base_/models/convnext/convnext-tiny.py", "./_sda_adamw.py"]

# label smoothing 0.1 and drop path 0.1 come from the base; no Mixup/CutMix
model = dict(train_cfg=None)

# the official mmcls v0 ImageNet checkpoint (scripts/download_ckpt.sh); override with
# --cfg-options load_from=...
load_from = "pretrained_ckpt/convnext-tiny_3rdparty_32xb128_in1k_20220124-18abde00.pth"
