# glyphs32's recipe (finetune.py) training only the BatchNorm layers (their affine parameters; their running
# statistics follow the data in train mode): convolutions and the head get a zero learning rate and no weight
# decay. A variant of the validation study's strength phase (sda/mini/study.py).
_base_ = ["finetune.py"]

_frozen = dict(lr_mult=0.0, decay_mult=0.0)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={"conv": _frozen, "downsample.0": _frozen, "head": _frozen}))
