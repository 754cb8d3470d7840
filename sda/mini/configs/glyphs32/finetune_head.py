# glyphs32's recipe (finetune.py) training only the classifier head: the backbone's weights and BatchNorm
# statistics stay the source model's (ResNet frozen_stages 4 freezes the stem and every stage, in eval mode).
# A variant of the validation study's strength phase (sda/mini/study.py).
_base_ = ["finetune.py"]

model = dict(backbone=dict(frozen_stages=4))
