# The mini benchmark's source classifier: the tiny model of TinyResNet.py (classifier_scratch.py recipe)
# trained from scratch on clean 32x32 digits (a class-folder set). On the mini digits split
# (898 train images) the committed model (sda/mini/assets/digits/classifier.pth) reached 99.2% val accuracy
# in these 50 epochs, a few minutes on 2 CPU cores.
_base_ = ["../classifier_scratch.py"]

train_dataloader = dict(batch_size=32, dataset=dict(data_root="data/mini/digits/train"))
optim_wrapper = dict(optimizer=dict(lr=0.05))
train_cfg = dict(by_epoch=True, max_epochs=50)
