# The mini benchmark's source classifier: the tiny model of configs/finetune/TinyResNet.py
# trained from scratch on clean 32x32 digits (a class-folder set). On the mini digits split
# (898 train images) the committed model (assets/mini/digits/classifier.pth) reached 99.2% val accuracy
# in these 50 epochs, a few minutes on 2 CPU cores.
_base_ = ["../../finetune/TinyResNet.py"]

load_from = None
train_dataloader = dict(batch_size=32, dataset=dict(data_root="data/mini/digits/train"))
optim_wrapper = dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=True, end=1, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", eta_min=0.0, by_epoch=True, begin=1),
]
train_cfg = dict(by_epoch=True, max_epochs=50)
