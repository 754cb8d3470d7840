# SDA Stage 3: fine-tune ConvNeXt-B on the aligned synthetic set (8 GPUs x 128 images).
# The recipe (data, optimizer, schedule, runtime) is ./_sda_adamw.py; this file adds the model.
_base_ = ["mmpretrain::_base_/models/convnext/convnext-base.py", "./_sda_adamw.py"]

# label smoothing 0.1 from the base; SDA sets drop path 0.5; no Mixup/CutMix
model = dict(backbone=dict(drop_path_rate=0.5), train_cfg=None)

# the official mmcls v0 ImageNet checkpoint (scripts/download_ckpt.sh); override with
# --cfg-options load_from=...
load_from = "pretrained_ckpt/convnext-base_3rdparty_32xb128_in1k_20220124-d0915162.pth"
