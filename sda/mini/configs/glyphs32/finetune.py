# glyphs32's fine-tuning recipe, for SDA (on the aligned synthetic set), its ablation (on the raw synthetic
# set) and the oracle of gate (d) (on projected real train images): configs/finetune/TinyResNet.py with a
# from-scratch-sized learning rate and schedule. Chosen on validation through gate (d): TinyResNet's own
# lr 5e-3 / 12 epochs recovered -2% (500 images) and 16% (1,500) of gate (c)'s gap, this recipe 66% (1,500).
_base_ = ["../TinyResNet.py"]

train_dataloader = dict(batch_size=32)
optim_wrapper = dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=True, end=1, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", eta_min=0.0, by_epoch=True, begin=1),
]
train_cfg = dict(by_epoch=True, max_epochs=40)
