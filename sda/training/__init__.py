"""Training the mini benchmarks' diffusion models: the command line shared by ``gen/train.py`` (DiT or a
class-conditional ADM) and ``align/train.py`` (the unconditional ADM projector).

``config`` (``TrainConfig``, ``GenTrainConfig``: every flag declared once, checked once) -> ``runner``
(``run_training``) over the loop of the diffusion core (``sda.diffusion.training``).
"""
