"""ADM UNet: checkpoint key names, known answers from guided-diffusion, precision paths, loader."""

from __future__ import annotations

import argparse
import hashlib
import math

import pytest
import torch

from sda.models.adm_flags import (
    ADM_256_UNCOND_FLAGS,
    ADM_FLAGS,
    add_model_args,
    create_model,
    load_adm_checkpoint,
    model_kwargs,
    model_kwargs_from_args,
    parse_channel_mult,
)
from sda.models.unet import UNetModel
from sda.models.unet_blocks import GroupNorm32, QKVAttention, QKVAttentionLegacy, timestep_embedding
from sda.utils.errors import UserError

# sha256 of "key shape" lines of guided-diffusion's own UNetModel built with the 256x256 uncond
# flags (the layout of 256x256_diffusion_uncond.pt), computed once from the reference code.
ADM_256_UNCOND_LAYOUT_SHA256 = "99b0f51e19c0f48559ffcaead639281ac95de54fa82e0bb6dc03a52a58962ac2"
# Parameter counts of the reference models for the released flag sets (same key layouts).
PARAM_COUNTS = {
    "256_uncond": 552_814_086,
    "64_cond": 295_904_454,
    "128_cond": 421_529_606,
    "256_cond": 553_838_086,
    "512_cond": 558_997_638,
}
TINY = dict(
    image_size=32,
    num_channels=32,
    num_res_blocks=1,
    channel_mult="1,2",
    attention_resolutions="16",
    learn_sigma=True,
    num_head_channels=16,
)
TINY_FULL = dict(use_new_attention_order=True, class_cond=True, resblock_updown=True, use_scale_shift_norm=True)
# Known answers: guided-diffusion's UNetModel with TINY (+ TINY_FULL) flags, weights from
# `_hash_fill`, input `_known_input`, timesteps (3, 900), labels (1, 7):
# out[0, :, 5, 7], out[1, :, 20, 3], out.abs().mean(), out.std().
GOLDEN = {
    False: (
        [
            7.21839714050293,
            9.33028507232666,
            8.756669998168945,
            7.717123985290527,
            8.691905975341797,
            7.223056793212891,
        ],
        [
            -2.329055070877075,
            -3.136141300201416,
            -3.0976366996765137,
            -3.4171762466430664,
            -3.2689294815063477,
            -3.4227309226989746,
        ],
        5.300806522369385,
        5.611208438873291,
    ),
    True: (
        [
            -5.767052173614502,
            -3.9148988723754883,
            -5.848940849304199,
            -4.591436862945557,
            -4.909217834472656,
            -3.3811514377593994,
        ],
        [
            -0.2922725975513458,
            -0.5906926393508911,
            -0.6651208400726318,
            -0.8617503046989441,
            -0.8248827457427979,
            0.45810890197753906,
        ],
        5.649646759033203,
        6.218857765197754,
    ),
}


def _hash_fill(model: torch.nn.Module) -> None:
    """Deterministic pseudo-random weights independent of torch's RNG and init code."""
    with torch.no_grad():
        for i, p in enumerate(model.state_dict().values()):
            n = torch.arange(p.numel(), dtype=torch.float64)
            p.copy_(0.4 * (torch.frac(torch.sin(12.9898 * n + 78.233 * i) * 43758.5453) - 0.5).reshape(p.shape))


def _known_input() -> torch.Tensor:
    return torch.sin(0.01 * torch.arange(2 * 3 * 32 * 32, dtype=torch.float64)).reshape(2, 3, 32, 32).float()


def _scaled_fill(model: torch.nn.Module) -> None:
    """Random weights at a trained-like scale (no zero layers, activations of order 1)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim > 1:  # conv / linear / embedding weights: unit-variance outputs
                p.copy_(noise / math.sqrt(p[0].numel()))
            else:  # norm scales near 1, biases near 0
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * noise)


def _tiny(full: bool = False, fill=_hash_fill, **kw) -> UNetModel:
    torch.manual_seed(0)
    model = create_model(**TINY, **(TINY_FULL if full else {}), **kw)
    fill(model)
    return model.eval()


def _call(model: UNetModel, x: torch.Tensor) -> torch.Tensor:
    t = torch.tensor([3, 900])  # (N,)
    y = torch.tensor([1, 7]) if model.num_classes is not None else None  # (N,)
    return model(x, t, y)


# ---- checkpoint layout -------------------------------------------------------------------------


def test_256_uncond_layout_matches_released_checkpoint():
    with torch.device("meta"):
        model = create_model(**model_kwargs(ADM_256_UNCOND_FLAGS))
    sd = model.state_dict()
    assert len(sd) == 566
    assert sum(p.numel() for p in model.parameters()) == 552_814_086
    spot = {
        "time_embed.0.weight": (1024, 256),
        "input_blocks.0.0.weight": (256, 3, 3, 3),
        "input_blocks.3.0.emb_layers.1.weight": (512, 1024),
        "input_blocks.7.0.skip_connection.weight": (512, 256, 1, 1),
        "input_blocks.17.1.qkv.weight": (3072, 1024, 1),
        "middle_block.1.proj_out.weight": (1024, 1024, 1),
        "output_blocks.0.0.in_layers.2.weight": (1024, 2048, 3, 3),
        "output_blocks.8.2.out_layers.3.weight": (512, 512, 3, 3),
        "output_blocks.17.0.skip_connection.weight": (256, 512, 1, 1),
        "out.2.weight": (6, 256, 3, 3),
    }
    for key, shape in spot.items():
        assert tuple(sd[key].shape) == shape, key
    assert "label_emb.weight" not in sd
    layout = "\n".join(f"{k} {tuple(v.shape)}" for k, v in sd.items())
    assert hashlib.sha256(layout.encode()).hexdigest() == ADM_256_UNCOND_LAYOUT_SHA256


@pytest.mark.parametrize("name", sorted(ADM_FLAGS))
def test_released_flag_sets_param_counts(name):
    with torch.device("meta"):
        model = create_model(**model_kwargs(ADM_FLAGS[name]))
    assert sum(p.numel() for p in model.parameters()) == PARAM_COUNTS[name]
    assert model.out_channels == 6
    assert (model.num_classes is not None) == ADM_FLAGS[name]["class_cond"]


def test_flag_sets_match_the_reference_readme():
    uncond = ADM_FLAGS["256_uncond"]
    assert uncond == ADM_256_UNCOND_FLAGS
    assert uncond["attention_resolutions"] == "32,16,8" and uncond["num_head_channels"] == 64
    assert uncond["use_fp16"] and uncond["resblock_updown"] and not uncond["class_cond"]
    assert ADM_FLAGS["256_cond"] == {**uncond, "class_cond": True}
    assert ADM_FLAGS["64_cond"]["use_new_attention_order"] and ADM_FLAGS["64_cond"]["dropout"] == 0.1
    assert ADM_FLAGS["128_cond"]["num_heads"] == 4 and "num_head_channels" not in ADM_FLAGS["128_cond"]
    assert ADM_FLAGS["512_cond"]["use_fp16"] is False


def test_256_uncond_strict_round_trip_in_memory():
    """The full 552.8M-parameter model instantiates and its state dict loads back strictly."""
    torch.manual_seed(0)
    model = create_model(**model_kwargs(ADM_256_UNCOND_FLAGS))
    sd = model.state_dict()
    with torch.device("meta"):
        clone = create_model(**model_kwargs(ADM_256_UNCOND_FLAGS))
    result = clone.load_state_dict(sd, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(clone.middle_block[1].qkv.weight, model.middle_block[1].qkv.weight)


# ---- known answers and forward -----------------------------------------------------------------


@pytest.mark.parametrize("full", [False, True])
def test_known_answer_against_guided_diffusion(full):
    model = _tiny(full)
    with torch.no_grad():
        out = _call(model, _known_input())  # (2, 6, 32, 32)
    first, second, mean_abs, std = GOLDEN[full]
    torch.testing.assert_close(out[0, :, 5, 7], torch.tensor(first), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out[1, :, 20, 3], torch.tensor(second), rtol=1e-4, atol=1e-4)
    assert out.abs().mean().item() == pytest.approx(mean_abs, rel=1e-5)
    assert out.std().item() == pytest.approx(std, rel=1e-5)


@pytest.mark.parametrize("new_order", [False, True])
@pytest.mark.parametrize("class_cond", [False, True])
@pytest.mark.parametrize("learn_sigma", [False, True])
def test_tiny_forward_shapes(new_order, class_cond, learn_sigma):
    torch.manual_seed(0)
    kw = {**TINY, "learn_sigma": learn_sigma, "class_cond": class_cond, "num_classes": 10}
    model = create_model(**kw, use_new_attention_order=new_order).eval()
    x = torch.randn(2, 3, 32, 32)  # (N, C, H, W)
    with torch.no_grad():
        out = _call(model, x)
    assert out.shape == (2, 6 if learn_sigma else 3, 32, 32)
    assert torch.isfinite(out).all()


def test_y_required_iff_class_conditional():
    model = _tiny(full=True)
    with pytest.raises(ValueError, match="class-conditional"):
        model(_known_input(), torch.tensor([3, 900]))


def test_channels_last_and_scalar_timestep():
    model = _tiny(full=True, fill=_scaled_fill)
    x = _known_input()
    with torch.no_grad():
        ref = _call(model, x)
        out = _call(model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last))
        same_t = model(x, torch.tensor(900), torch.tensor([7, 7]))
        both = model(x, torch.tensor([900, 900]), torch.tensor([7, 7]))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(same_t, both)


def test_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0.0, 5.0])
    emb = timestep_embedding(t, 7)  # (2, 7)
    assert emb.shape == (2, 7)
    freqs = torch.exp(-math.log(10000) * torch.arange(3) / 3)
    torch.testing.assert_close(emb[1, :3], torch.cos(5 * freqs))
    torch.testing.assert_close(emb[1, 3:6], torch.sin(5 * freqs))
    assert emb[:, 6].abs().max() == 0


def test_gradient_checkpointing_gives_same_gradients():
    grads = []
    for use_checkpoint in (False, True):
        model = _tiny(full=True, fill=_scaled_fill, use_checkpoint=use_checkpoint).train()
        x = _known_input().requires_grad_()
        _call(model, x).square().mean().backward()
        grads.append((x.grad, model.middle_block[1].qkv.weight.grad, model.input_blocks[3][1].qkv.weight.grad))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ---- attention -------------------------------------------------------------------------------


def _einsum_attention(qkv: torch.Tensor, heads: int, new_order: bool) -> torch.Tensor:
    """ADM's attention as written in the paper code's layout: (N, 3*H*C, T) -> (N, H*C, T)."""
    n, width, length = qkv.shape
    ch = width // (3 * heads)
    if new_order:
        q, k, v = (z.reshape(n * heads, ch, length) for z in qkv.chunk(3, dim=1))
    else:
        q, k, v = qkv.reshape(n * heads, 3 * ch, length).split(ch, dim=1)
    scale = ch**-0.25
    weight = torch.einsum("bct,bcs->bts", q * scale, k * scale).softmax(dim=-1)  # (N*H, T, T)
    return torch.einsum("bts,bcs->bct", weight, v).reshape(n, heads * ch, length)


@pytest.mark.parametrize("new_order", [False, True])
@pytest.mark.parametrize("heads", [1, 4])
def test_sdpa_attention_equals_einsum_reference(new_order, heads):
    torch.manual_seed(0)
    qkv = torch.randn(2, 3 * heads * 16, 37)  # (N, 3*H*C, T), the reference layout
    attn = (QKVAttention if new_order else QKVAttentionLegacy)(heads)
    out = attn(qkv.transpose(1, 2)).transpose(1, 2)  # token-major in and out
    torch.testing.assert_close(out, _einsum_attention(qkv, heads, new_order), rtol=1e-5, atol=1e-5)


def test_attention_orders_differ():
    torch.manual_seed(0)
    qkv = torch.randn(1, 5, 3 * 4 * 8)  # (N, T, 3*H*C)
    assert not torch.allclose(QKVAttention(4)(qkv), QKVAttentionLegacy(4)(qkv))


# ---- precision -------------------------------------------------------------------------------


def test_fp16_conversion_keeps_norms_fp32():
    model = _tiny(full=True, fill=_scaled_fill)
    with torch.no_grad():
        ref = _call(model, _known_input())
    model.convert_to_fp16()
    assert model.dtype == torch.float16
    assert model.input_blocks[0][0].weight.dtype == torch.float16
    assert model.middle_block[1].qkv.weight.dtype == torch.float16
    assert model.output_blocks[0][0].in_layers[2].bias.dtype == torch.float16
    for m in model.modules():
        if isinstance(m, GroupNorm32):
            assert m.weight.dtype == torch.float32
    assert model.time_embed[0].weight.dtype == torch.float32  # embeddings, linears, head stay fp32
    assert model.input_blocks[1][0].emb_layers[1].weight.dtype == torch.float32
    assert model.out[2].weight.dtype == torch.float32
    try:
        with torch.no_grad():
            out = _call(model, _known_input())
    except (RuntimeError, NotImplementedError) as e:  # pragma: no cover - old CPU builds
        pytest.skip(f"float16 CPU kernels missing: {e}")
    assert out.dtype == torch.float32
    # one float16 forward: each of the ~20 layers rounds at 2^-11 relative, so first-order errors stay within
    # about 20 * 2^-11 = 1% of a value (kernels on any CPU round at most that often); rtol 2% leaves 2x, and
    # atol covers values near zero. A layer left in the wrong dtype or scaled wrongly is off by far more.
    torch.testing.assert_close(out, ref, rtol=0.02, atol=0.05 * ref.abs().mean().item())
    model.convert_to_fp32()
    assert model.dtype == torch.float32 and model.input_blocks[0][0].weight.dtype == torch.float32


def test_bf16_autocast_close_to_fp32():
    model = _tiny(full=True, fill=_scaled_fill)
    x = _known_input()
    with torch.no_grad():
        ref = _call(model, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = _call(model, x)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 0.05  # bf16 has 8 mantissa bits; about 0.02 here


# ---- saving, loading, flags --------------------------------------------------------------------


def test_save_reload_strict_round_trip(tmp_path):
    model = _tiny(full=True)
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    fresh = create_model(**TINY, **TINY_FULL).eval()
    assert load_adm_checkpoint(fresh, path) is fresh
    x = _known_input()
    with torch.no_grad():
        torch.testing.assert_close(_call(fresh, x), _call(model, x), rtol=0, atol=0)


def test_loader_names_missing_and_unexpected_keys(tmp_path):
    sd = _tiny(full=True).state_dict()
    sd.pop("middle_block.1.qkv.weight")
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    with pytest.raises(UserError) as err:
        load_adm_checkpoint(create_model(**TINY, **TINY_FULL), path)
    msg = str(err.value)
    assert "bad.pt" in msg and "middle_block.1.qkv.weight" in msg and "extra.weight" in msg
    with pytest.raises(UserError, match="not found"):
        load_adm_checkpoint(create_model(**TINY), tmp_path / "absent.pt")


def test_loader_rejects_wrong_flags(tmp_path):
    path = tmp_path / "uncond.pt"
    torch.save(_tiny().state_dict(), path)
    with pytest.raises(UserError, match="shape mismatch|missing"):
        load_adm_checkpoint(create_model(**{**TINY, "num_channels": 64}), path)


def test_add_model_args_and_kwargs():
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    defaults = model_kwargs_from_args(parser.parse_args([]))
    assert defaults == {**defaults, **model_kwargs(ADM_256_UNCOND_FLAGS)}
    args = parser.parse_args(
        "--image_size 32 --num_channels 32 --num_res_blocks 1 --channel_mult 1,2 --attention_resolutions 16 "
        "--learn_sigma False --class_cond True --use_fp16 false --resblock_updown True --num_head_channels -1 "
        "--num_heads 2 --dropout 0.1".split()
    )
    kw = model_kwargs_from_args(args)
    assert kw["use_fp16"] is False and kw["class_cond"] is True and kw["dropout"] == 0.1
    model = create_model(**kw)
    assert model.out_channels == 3 and model.num_classes == 1000 and model.channel_mult == (1, 2)
    assert model.attention_resolutions == (2,)
    with pytest.raises(SystemExit):
        parser.parse_args(["--use_fp16", "maybe"])


def test_channel_mult_defaults_and_errors():
    assert parse_channel_mult("", 256) == (1, 1, 2, 2, 4, 4)
    assert parse_channel_mult("", 512) == (0.5, 1, 1, 2, 2, 4, 4)
    assert parse_channel_mult("", 32) == (1, 2, 2, 2)
    assert parse_channel_mult("1,2", 16) == (1, 2)
    with pytest.raises(UserError, match="channel_mult"):
        parse_channel_mult("", 16)
    with pytest.raises(UserError, match="channel_mult"):
        parse_channel_mult("1,x", 32)


def test_small_image_sizes_and_in_channels():
    model = create_model(
        16, 32, 1, channel_mult="1,2", attention_resolutions="8", in_channels=4, learn_sigma=True
    ).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 4, 16, 16), torch.tensor([10]))
    assert out.shape == (1, 8, 16, 16)
