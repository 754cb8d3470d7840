"""DiT: configurations, checkpoint compatibility, known-answer embeddings, guidance."""

from __future__ import annotations

import argparse
import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from sda.gen.models import load_dit
from sda.models.dit import DiT_models, build_dit, sincos_pos_embed_2d, timestep_embedding
from sda.utils.errors import UserError

# (depth, hidden, patch, heads) of the paper's Table 1 / the official model zoo.
CONFIGS = {
    "DiT-XL/2": (28, 1152, 2, 16),
    "DiT-XL/4": (28, 1152, 4, 16),
    "DiT-XL/8": (28, 1152, 8, 16),
    "DiT-L/2": (24, 1024, 2, 16),
    "DiT-L/4": (24, 1024, 4, 16),
    "DiT-L/8": (24, 1024, 8, 16),
    "DiT-B/2": (12, 768, 2, 12),
    "DiT-B/4": (12, 768, 4, 12),
    "DiT-B/8": (12, 768, 8, 12),
    "DiT-S/2": (12, 384, 2, 6),
    "DiT-S/4": (12, 384, 4, 6),
    "DiT-S/8": (12, 384, 8, 6),
}


def expected_shapes(
    depth: int, d: int, p: int, input_size: int, c_in: int = 4, classes: int = 1000, learn_sigma: bool = True
) -> dict[str, tuple[int, ...]]:
    """The official checkpoint's state-dict layout, written out from the architecture."""
    c_out = 2 * c_in if learn_sigma else c_in
    s = {
        "pos_embed": (1, (input_size // p) ** 2, d),
        "x_embedder.proj.weight": (d, c_in, p, p),
        "x_embedder.proj.bias": (d,),
        "t_embedder.mlp.0.weight": (d, 256),
        "t_embedder.mlp.0.bias": (d,),
        "t_embedder.mlp.2.weight": (d, d),
        "t_embedder.mlp.2.bias": (d,),
        "y_embedder.embedding_table.weight": (classes + 1, d),
        "final_layer.linear.weight": (p * p * c_out, d),
        "final_layer.linear.bias": (p * p * c_out,),
        "final_layer.adaLN_modulation.1.weight": (2 * d, d),
        "final_layer.adaLN_modulation.1.bias": (2 * d,),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        s.update(
            {
                b + "attn.qkv.weight": (3 * d, d),
                b + "attn.qkv.bias": (3 * d,),
                b + "attn.proj.weight": (d, d),
                b + "attn.proj.bias": (d,),
                b + "mlp.fc1.weight": (4 * d, d),
                b + "mlp.fc1.bias": (4 * d,),
                b + "mlp.fc2.weight": (d, 4 * d),
                b + "mlp.fc2.bias": (d,),
                b + "adaLN_modulation.1.weight": (6 * d, d),
                b + "adaLN_modulation.1.bias": (6 * d,),
            }
        )
    return s


def randomize(model: nn.Module, seed: int = 0, std: float = 0.05) -> nn.Module:
    """Give the zero-initialised layers (adaLN-Zero, output) random weights so outputs are not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adaLN_modulation" in name or name.startswith("final_layer") or name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    return randomize(build_dit("DiT-S/8", input_size=16, num_classes=10), seed=1)


@pytest.mark.parametrize("name", list(DiT_models))
def test_every_config_matches_the_official_layout_and_reloads(name):
    depth, d, p, heads = CONFIGS[name]
    with torch.device("meta"):  # XL is 675M parameters: check the structure without allocating it
        model = DiT_models[name](input_size=32, num_classes=1000)
        fresh = DiT_models[name](input_size=32, num_classes=1000)
    sd = model.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected_shapes(depth, d, p, 32)
    assert model.num_heads == heads
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    if name == "DiT-XL/2":  # the parameter count the official training script prints
        assert sum(t.numel() for t in model.parameters()) == 675_129_632


def test_small_config_saves_and_reloads_strictly(tiny, tmp_path):
    torch.save(tiny.state_dict(), tmp_path / "m.pt")
    loaded = load_dit("DiT-S/8", tmp_path / "m.pt", input_size=16, num_classes=10, in_channels=4)
    for k, v in tiny.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    x, t, y = torch.randn(2, 4, 16, 16), torch.tensor([3, 900]), torch.tensor([1, 10])
    with torch.no_grad():
        assert torch.equal(tiny(x, t, y), loaded(x, t, y))


def test_training_checkpoint_loads_ema(tiny, tmp_path):
    ema = {k: v + 1 if k == "final_layer.linear.weight" else v for k, v in tiny.state_dict().items()}
    ckpt = {
        "model": tiny.state_dict(),
        "ema": ema,
        "opt": {"state": {}, "param_groups": []},
        "args": argparse.Namespace(model="DiT-S/8"),
    }
    torch.save(ckpt, tmp_path / "0001000.pt")
    loaded = load_dit("DiT-S/8", tmp_path / "0001000.pt", input_size=16, num_classes=10, in_channels=4)
    assert torch.equal(loaded.final_layer.linear.weight, ema["final_layer.linear.weight"])


def test_checkpoint_of_another_size_names_the_mismatch(tiny, tmp_path):
    sd = tiny.state_dict()
    torch.save(sd, tmp_path / "s8.pt")
    with pytest.raises(UserError, match="shape mismatches.*x_embedder.proj.weight"):
        load_dit("DiT-S/4", tmp_path / "s8.pt", input_size=16, num_classes=10, in_channels=4)
    deeper = {**sd, "blocks.12.attn.qkv.weight": sd["blocks.0.attn.qkv.weight"]}
    del deeper["blocks.11.mlp.fc2.bias"]
    torch.save(deeper, tmp_path / "deeper.pt")
    with pytest.raises(UserError, match=r"missing keys: blocks\.11\.mlp\.fc2\.bias.*unexpected keys: blocks\.12"):
        load_dit("DiT-S/8", tmp_path / "deeper.pt", input_size=16, num_classes=10, in_channels=4)
    with pytest.raises(UserError, match="not found"):
        load_dit("DiT-S/8", tmp_path / "nope.pt", input_size=16, num_classes=10, in_channels=4)
    with pytest.raises(ValueError, match="unknown DiT model"):  # the model raises plain ValueErrors ...
        build_dit("DiT-M/2")
    with pytest.raises(UserError, match="unknown DiT model"):  # ... which the stage turns into one clear line
        load_dit("DiT-M/2", tmp_path / "s8.pt", input_size=16, num_classes=10, in_channels=4)


def test_null_class_row(tiny):
    with torch.device("meta"):
        assert build_dit("DiT-S/8", input_size=8, num_classes=7).y_embedder.embedding_table.num_embeddings == 8
        no_drop = build_dit("DiT-S/8", input_size=8, num_classes=7, class_dropout_prob=0.0)
        assert no_drop.y_embedder.embedding_table.num_embeddings == 7
    assert tiny.null_class == 10
    assert torch.equal(tiny.y_embedder.token_drop(torch.tensor([1, 2]), torch.tensor([1, 0])), torch.tensor([10, 2]))


def test_pos_embed_known_answer(tiny):
    dim, g = 16, 3
    q = dim // 4
    w = 10000.0 ** (-np.arange(q) / q)
    ref = np.zeros((g * g, dim))
    for r in range(g):
        for c in range(g):
            ref[r * g + c] = np.concatenate([np.sin(c * w), np.cos(c * w), np.sin(r * w), np.cos(r * w)])
    # atol 1e-7 > one float32 ulp of a value in [0.5, 1] (6e-8): allows one rounding, not a wrong frequency
    np.testing.assert_allclose(sincos_pos_embed_2d(dim, g).numpy(), ref.astype(np.float32), rtol=0, atol=1e-7)
    assert torch.equal(tiny.pos_embed[0], sincos_pos_embed_2d(384, 2))  # (T, D) for a 2 x 2 token grid
    np.testing.assert_allclose(
        sincos_pos_embed_2d(384, 4).numpy()[6, [0, 96, 192, 288]],  # row 1, column 2
        [np.sin(2.0), np.cos(2.0), np.sin(1.0), np.cos(1.0)],
        atol=1e-7,
    )


@pytest.mark.parametrize("dim", [256, 7])
def test_timestep_embedding_known_answer(dim):
    t = np.array([0.0, 1.0, 250.5, 999.0])
    half = dim // 2
    f = np.exp(-math.log(10000) * np.arange(half) / half)
    ref = np.concatenate([np.cos(t[:, None] * f), np.sin(t[:, None] * f)], axis=1)
    if dim % 2:
        ref = np.concatenate([ref, np.zeros((len(t), 1))], axis=1)
    out = timestep_embedding(torch.tensor(t, dtype=torch.float32), dim).numpy()
    np.testing.assert_allclose(out, ref, atol=2e-4)  # float32 arguments up to ~1000 rad


def test_layers_match_timm(tiny):
    """The re-declared layers equal timm's (which the official code uses), keys and outputs."""
    from timm.layers import Mlp as TimmMlp
    from timm.models.vision_transformer import Attention as TimmAttention
    from timm.models.vision_transformer import PatchEmbed as TimmPatchEmbed

    ours = {"attn": tiny.blocks[0].attn, "mlp": tiny.blocks[0].mlp, "x_embedder": tiny.x_embedder}
    theirs = {
        "attn": TimmAttention(384, num_heads=6, qkv_bias=True),
        "mlp": TimmMlp(in_features=384, hidden_features=1536, act_layer=lambda: nn.GELU(approximate="tanh"), drop=0),
        "x_embedder": TimmPatchEmbed(16, 8, 4, 384, bias=True),
    }
    for k in ours:
        assert list(ours[k].state_dict()) == list(theirs[k].state_dict()), k
        theirs[k].load_state_dict(ours[k].state_dict(), strict=True)
    x = torch.randn(2, 4, 384)
    with torch.no_grad():
        torch.testing.assert_close(ours["attn"](x), theirs["attn"].eval()(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours["mlp"](x), theirs["mlp"](x), atol=1e-5, rtol=1e-5)
        img = torch.randn(2, 4, 16, 16)
        torch.testing.assert_close(ours["x_embedder"](img), theirs["x_embedder"](img), atol=1e-5, rtol=1e-5)


def test_cfg_one_equals_conditional_and_channel_options():
    model = randomize(build_dit("DiT-d2w64h2/8", input_size=16, num_classes=10), seed=4)  # a small custom size
    x = torch.randn(2, 4, 16, 16)
    t = torch.tensor([500, 500, 500, 500])
    y = torch.tensor([3, 5, 10, 10])  # labels, then the null class
    xx = torch.cat([x, x])
    with torch.no_grad():
        cond = model(x, t[:2], y[:2])  # (2, 8, 16, 16)
        uncond = model(x, t[2:], y[2:])
        one = model.forward_with_cfg(xx, t, y, 1.0)
        three = model.forward_with_cfg(xx, t, y, 4.0, "3")
        every = model.forward_with_cfg(xx, t, y, 4.0, "all")
    torch.testing.assert_close(one[:2], cond, atol=1e-5, rtol=1e-5)
    guided = uncond + 4.0 * (cond - uncond)
    torch.testing.assert_close(three[:2, :3], guided[:, :3], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(every[:2, :4], guided[:, :4], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(three[:2, 3:], cond[:, 3:], atol=1e-5, rtol=1e-5)  # 4th eps + variance: not guided
    torch.testing.assert_close(every[:2, 4:], cond[:, 4:], atol=1e-5, rtol=1e-5)  # variance: not guided
    assert torch.equal(three[:, :3], every[:, :3])  # the options differ only in channel 3
    assert not torch.allclose(three[:, 3], every[:, 3])
    assert torch.equal(three[:2, :3], three[2:, :3])  # both halves carry the guided epsilon
