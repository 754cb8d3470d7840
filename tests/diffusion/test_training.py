"""The diffusion training loop: it learns, its EMA follows the formula, its checkpoints resume;
the gen/align training entry points write checkpoints their model factories load strictly."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sda.diffusion import create_diffusion
from sda.diffusion.training import (
    CKPT_KEYS,
    TrainSettings,
    batch_at,
    ema_decay_at,
    latest_checkpoint,
    load_checkpoint,
    train,
    update_ema,
)
from sda.utils.checkpoint import extract_state_dict, load_state_dict_strict, safe_load

ROOT = Path(__file__).resolve().parents[2]


class TinyEps(nn.Module):
    """A per-pixel eps/variance predictor conditioned on t: enough to lower the loss quickly."""

    def __init__(self, learn_sigma: bool = True):
        super().__init__()
        self.t_embed = nn.Embedding(1000, 8)
        self.net = nn.Sequential(nn.Conv2d(3 + 8, 16, 1), nn.SiLU(), nn.Conv2d(16, 6 if learn_sigma else 3, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        e = self.t_embed(t)[:, :, None, None].expand(-1, -1, *x.shape[2:])  # (N, 8, H, W)
        return self.net(torch.cat([x, e], dim=1))  # (N, 6, H, W)


def _data(n: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 3, 1, 1, generator=g) * 2 - 1).expand(n, 3, 4, 4).contiguous()  # (n, 3, 4, 4)


def _args() -> argparse.Namespace:
    return argparse.Namespace(model="tiny")


def test_update_ema_matches_formula():
    torch.manual_seed(0)
    model, ema = nn.Linear(3, 2), nn.Linear(3, 2)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    update_ema(ema, model, 0.9)
    for k, v in model.state_dict().items():
        assert torch.allclose(ema.state_dict()[k], 0.9 * before[k] + 0.1 * v)
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1) and ema_decay_at(10**6, 0.999) == 0.999


def test_batches_cover_each_epoch_once():
    s = TrainSettings(steps=1, batch_size=4, seed=3)
    epoch = torch.cat([batch_at(i, 10, s) for i in range(2)])  # 10 // 4 = 2 batches per epoch
    assert len(set(epoch.tolist())) == 8
    assert torch.equal(batch_at(5, 10, s), batch_at(5, 10, s))


def test_loss_decreases_on_a_tiny_problem(tmp_path):
    torch.manual_seed(0)
    diffusion = create_diffusion("", learn_sigma=True)
    model = TinyEps()
    x = _data()
    s = TrainSettings(steps=150, batch_size=16, lr=1e-2, ckpt_every=1000, log_every=25)
    losses = []
    out = train(model, diffusion, x, None, s, tmp_path / "ck", _args(), log=lambda m: losses.append(m))
    first, last = float(losses[0].split()[3]), float(losses[-1].split()[3])
    assert out["step"] == 150 and last < 0.7 * first


def test_checkpoint_format_and_exact_resume(tmp_path):
    diffusion = create_diffusion("", learn_sigma=True)
    x = _data()
    s = TrainSettings(steps=4, batch_size=8, lr=1e-2, ckpt_every=2, log_every=2)
    torch.manual_seed(0)
    straight = train(TinyEps(), diffusion, x, None, s, tmp_path / "a", _args(), log=lambda m: None)
    ckpt = safe_load(latest_checkpoint(tmp_path / "a"))
    assert set(ckpt) == set(CKPT_KEYS) and ckpt["step"] == 4 and isinstance(ckpt["args"], argparse.Namespace)

    # stop after 2 steps, then resume to 4 with a differently initialised model: same result
    torch.manual_seed(0)
    train(
        TinyEps(),
        diffusion,
        x,
        None,
        TrainSettings(**{**s.__dict__, "steps": 2}),
        tmp_path / "b",
        _args(),
        log=lambda m: None,
    )
    torch.manual_seed(1)
    msgs = []
    resumed = train(TinyEps(), diffusion, x, None, s, tmp_path / "b", _args(), log=msgs.append)
    assert msgs[0].startswith("resumed") and "step 2" in msgs[0] and resumed["step"] == 4
    a, b = safe_load(straight["checkpoint"]), safe_load(resumed["checkpoint"])
    for key in ("model", "ema"):
        for k in a[key]:
            assert torch.allclose(a[key][k], b[key][k], atol=1e-6), (key, k)
    model, ema = TinyEps(), TinyEps()
    assert load_checkpoint(resumed["checkpoint"], model, ema) == 4


TINY_ADM = {
    "image_size": 8,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": "1,2",
    "attention_resolutions": "2",
    "num_heads": 2,
    "learn_sigma": True,
    "use_scale_shift_norm": True,
    "diffusion_steps": 1000,
    "steps": 3,
    "batch_size": 4,
    "lr": 1e-3,
    "log_every": 1,
    "ckpt_every": 2,
}


def _load_script(rel: str):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_")[:-3], ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _image_folder(root: Path, classes: int = 2, per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        for i in range(per_class):
            (root / f"{c:04d}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(root / f"{c:04d}" / f"{i}.png")
    return root


@pytest.mark.parametrize(
    "script,extra",
    [
        ("align/train.py", []),
        ("gen/train.py", ["--model", "ADM"]),
        ("gen/train.py", ["--model", "ADM", "--predict_v", "True"]),
        ("gen/train.py", ["--model", "DiT-S/4", "--image_size", "8"]),
    ],
)
def test_entry_points_write_loadable_checkpoints(tmp_path, script, extra):
    from sda.models.adm_flags import create_model, model_kwargs
    from sda.models.dit import build_dit

    data = _image_folder(tmp_path / "data")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(TINY_ADM))
    export = tmp_path / "ema.pt"
    argv = [
        "--config",
        str(cfg),
        "--data_dir",
        str(data),
        "--results_dir",
        str(tmp_path / "res"),
        "--export",
        str(export),
        *extra,
    ]
    out = _load_script(script).main(argv)
    assert out["step"] == 3
    assert sorted(p.name for p in (tmp_path / "res" / "checkpoints").iterdir()) == ["0000002.pt", "0000003.pt"]
    if script == "align/train.py":
        model = create_model(**model_kwargs(TINY_ADM))
    elif "ADM" in extra:
        model = create_model(**model_kwargs({**TINY_ADM, "class_cond": True, "num_classes": 2}))
    else:
        model = build_dit("DiT-S/4", input_size=8, in_channels=3, num_classes=2, learn_sigma=True)
    sd = safe_load(export)
    load_state_dict_strict(model, sd, what=str(export))  # the exported EMA: a plain state dict
    load_state_dict_strict(model, extract_state_dict(safe_load(tmp_path / "res/checkpoints/0000003.pt")), "ckpt")


def test_lr_schedule_warmup_constant_decay():
    from sda.diffusion.training import lr_at

    s = TrainSettings(steps=10, lr=1.0, warmup=2, decay_steps=4)
    assert [lr_at(i, s) for i in range(10)] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25]


def test_train_rejects_two_model_targets(tmp_path):
    from sda.utils.errors import UserError

    data = _image_folder(tmp_path / "data")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**TINY_ADM, "predict_xstart": True, "predict_v": True}))
    with pytest.raises(UserError, match="--predict_xstart and --predict_v exclude each other"):
        _load_script("align/train.py").main(
            ["--config", str(cfg), "--data_dir", str(data), "--results_dir", str(tmp_path / "res")]
        )
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("script,extra", [("align/train.py", []), ("gen/train.py", ["--model", "ADM"])])
def test_same_command_gives_the_same_weights(tmp_path, script, extra):
    # the initial weights come from --seed too (the model is built after seeding), not from the global RNG state
    data = _image_folder(tmp_path / "data")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**TINY_ADM, "steps": 1}))
    out = {}
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        torch.manual_seed(100 + len(out))  # whatever the caller's RNG state
        argv = [
            "--config",
            str(cfg),
            "--data_dir",
            str(data),
            "--results_dir",
            str(tmp_path / run),
            "--seed",
            str(seed),
            "--export",
            str(tmp_path / f"{run}.pt"),
            *extra,
        ]
        _load_script(script).main(argv)
        out[run] = safe_load(tmp_path / f"{run}.pt")
    assert all(torch.equal(out["a"][k], out["b"][k]) for k in out["a"])
    assert not all(torch.equal(out["a"][k], out["c"][k]) for k in out["a"])


def test_drop_labels_rate_seed_and_null_index():
    from sda.diffusion.training import drop_labels

    y = torch.arange(10).repeat(100)  # (1000,)
    off = TrainSettings(steps=1, class_dropout=0.0, num_classes=10)
    assert drop_labels(y, 0, off) is y
    s = TrainSettings(steps=1, class_dropout=0.1, num_classes=10, seed=3)
    a, b = drop_labels(y, 5, s), drop_labels(y, 5, s)
    assert torch.equal(a, b) and not torch.equal(a, drop_labels(y, 6, s))  # seeded per step
    dropped = a == 10
    assert 0.07 < dropped.float().mean() < 0.13 and torch.equal(a[~dropped], y[~dropped])


def test_adm_class_dropout_adds_a_null_row_and_cfg_samples(tmp_path):
    from sda.gen import GenConfig
    from sda.gen import sampler as gen_sampler
    from sda.utils.errors import UserError

    data = _image_folder(tmp_path / "data")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**TINY_ADM, "steps": 2}))

    def argv(results: str, *extra: str) -> list[str]:
        return ["--config", str(cfg), "--data_dir", str(data), "--results_dir", str(tmp_path / results), *extra]

    train_py = _load_script("gen/train.py")
    train_py.main(argv("r", "--model", "ADM", "--export", str(tmp_path / "cfg.pt"), "--class_dropout", "0.1"))
    assert safe_load(tmp_path / "cfg.pt")["label_emb.weight"].shape[0] == 3  # 2 classes + the null class
    with pytest.raises(UserError, match="--class_dropout is for --model ADM"):
        train_py.main(argv("d", "--model", "DiT-S/4", "--image_size", "8", "--class_dropout", "0.1"))
    train_py.main(argv("r0", "--model", "ADM", "--export", str(tmp_path / "plain.pt")))
    flags = [f"--{k}={v}" for k, v in TINY_ADM.items() if k in ("num_channels", "num_res_blocks", "channel_mult",
             "attention_resolutions", "num_heads", "learn_sigma", "use_scale_shift_norm")]  # fmt: skip
    base = ["--model", "ADM", "--image-size", "8", "--num-classes", "2", "--num-sampling-steps", "2", "--device", "cpu"]
    base += ["--class_cond", "True", "--resblock_updown", "False", "--num_head_channels", "-1", *flags]
    guided = gen_sampler.build_sampler(
        GenConfig.from_argv([*base, "--ckpt", str(tmp_path / "cfg.pt"), "--cfg-scale", "3"]), torch.device("cpu")
    )
    images = guided.sample([0, 1], [0, 1])
    assert images.shape == (2, 8, 8, 3) and images.dtype == torch.uint8
    plain = GenConfig.from_argv([*base, "--ckpt", str(tmp_path / "plain.pt"), "--cfg-scale", "3"])
    with pytest.raises(UserError, match="no null class .*--class_dropout 0.1"):
        gen_sampler.build_sampler(plain, torch.device("cpu"))


def test_generic_cfg_equals_dit_guidance():
    from sda.models.dit import build_dit, forward_with_cfg

    torch.manual_seed(0)
    dit = build_dit("DiT-S/4", input_size=8, in_channels=4, num_classes=3, learn_sigma=True).eval()
    x = torch.randn(2, 4, 8, 8).repeat(2, 1, 1, 1)  # (4, 4, 8, 8)
    t, y = torch.tensor([5, 5, 5, 5]), torch.tensor([0, 2, 3, 3])
    with torch.no_grad():
        out = forward_with_cfg(dit, x, t, y, 4.0, "3")
        cond, uncond = dit(x, t, y).chunk(2)
    assert torch.allclose(out[:2, :3], uncond[:, :3] + 4.0 * (cond[:, :3] - uncond[:, :3]), atol=1e-5)
    assert torch.equal(out[:2, 3:], cond[:, 3:]) and torch.equal(out[:2], out[2:])  # the 4th and var channels stay
    assert torch.equal(out, dit.forward_with_cfg(x, t, y, 4.0, "3"))
