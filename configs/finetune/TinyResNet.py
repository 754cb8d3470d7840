# The tiny recipe of the tests and the mini benchmark, named here like the paper's five models
# (finetune/train.py TinyResNet, scripts/finetune.sh TinyResNet). It lives with the mini benchmark's configs,
# inside the package, so an installed package finds it: sda/mini/configs/TinyResNet.py.
_base_ = ["../../sda/mini/configs/TinyResNet.py"]
