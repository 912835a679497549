"""Networks of IterMask3D / IterMask2 and model file I/O."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from support import network_settings

from itermask.errors import ConfigError, InputError
from itermask.core.networks import (
    AttnResUNet2D,
    ResUNet3D,
    SpatialSelfAttention2D,
    build_network,
    count_parameters,
    save_models,
)

torch.set_num_threads(1)

NET3D = network_settings("itermask3d")  # the schema's (the reference's) network settings


def net3d(**over) -> dict:
    return {**NET3D, **over}


def net2d(**over) -> dict:
    return network_settings("itermask2", **over)


def expected_params_3d(cin: int, c: list[int], out: int = 1) -> int:
    """Closed-form count: conv weights + biases, BatchNorm (2 per channel), PReLU (1 per block)."""
    conv = lambda a, b: a * b * 27 + b  # noqa: E731
    block = lambda a, b: conv(a, b) + 2 * b + 1  # noqa: E731
    total, prev = 0, cin
    for w in c:  # encoder: two blocks per level, parameter-free residual
        total += block(prev, w) + block(w, w)
        prev = w
    n, prev = len(c), c[-1]
    for t in range(1, n):
        width = prev + c[n - 1 - t]
        cout = out if t == n - 1 else c[n - 2 - t]
        total += block(width, width) + (conv(width, cout) if t == n - 1 else block(width, cout))
        prev = cout
    return total


def test_3d_parameter_count_reference():
    model = build_network("itermask3d", 2, NET3D)
    n = count_parameters(model)
    assert n == expected_params_3d(2, [16, 32, 64, 128, 256])
    assert abs(n - 8.9e6) / 8.9e6 < 0.10, n


def test_3d_input_skip_feeds_the_input_to_the_last_stage_at_full_resolution():
    """input_skip adds in_channels input channels to the last decoder stage's first conv
    (27 weights per input channel and output channel); off by default (the reference)."""
    c = [4, 8, 8, 8, 8]
    plain = build_network("itermask3d", 2, net3d(channels=c, dropout=0.0))
    skip = build_network("itermask3d", 2, net3d(channels=c, dropout=0.0, input_skip=True))
    assert count_parameters(skip) - count_parameters(plain) == 2 * (2 * c[0]) * 27
    assert build_network("itermask3d", 2, net3d(channels=c)).input_skip is False  # the reference
    assert skip(torch.zeros(1, 2, 32, 32, 32)).shape == (1, 1, 32, 32, 32)


def test_3d_conv_residual_option_adds_parameters():
    base = count_parameters(build_network("itermask3d", 2, NET3D))
    conv = count_parameters(build_network("itermask3d", 2, net3d(residual="conv")))
    # MONAI ResidualUnit: strided 3x3x3 conv residual per level, 1x1x1 at the stride-1 level
    extra = sum(a * b * 27 + b for a, b in [(2, 16), (16, 32), (32, 64), (64, 128)]) + 128 * 256 + 256
    assert conv - base == extra


@pytest.mark.parametrize("size", [32, 48])
def test_3d_output_shape(size):
    model = build_network("itermask3d", 2, net3d(channels=[2, 4, 4, 8, 8], dropout=0.2)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 2, size, size, size))
    assert out.shape == (1, 1, size, size, size)


def test_3d_rejects_indivisible_size():
    model = build_network("itermask3d", 1, net3d(channels=[2, 4, 4, 8, 8]))
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.randn(1, 1, 40, 32, 32))


def test_3d_encoder_residual_is_average_pool_on_first_channels():
    model = ResUNet3D(2, 1, **net3d(channels=[4, 8], dropout=0.0)).eval()
    unit = model.encoder[0]
    x = torch.randn(1, 2, 8, 8, 8)
    with torch.no_grad():
        out, conv = unit(x), unit.conv(x)
        pool = torch.nn.functional.avg_pool3d(x, 3, 2, 1)
    torch.testing.assert_close(out[:, :2], conv[:, :2] + pool)
    torch.testing.assert_close(out[:, 2:], conv[:, 2:])


@pytest.mark.parametrize("size", [64, 128])
def test_2d_output_shape_and_attention_resolutions(size):
    attn = [size // 4, size // 8, size // 16]
    model = AttnResUNet2D(2, 1, **net2d(channels=[4, 4, 8, 8, 8], attention_res=attn, image_size=size,
                                        num_res_blocks=1)).eval()
    seen = []
    for m in model.modules():
        if isinstance(m, SpatialSelfAttention2D):
            m.register_forward_hook(lambda mod, inp, out: seen.append((mod.resolution, inp[0].shape[-1])))
    with torch.no_grad():
        out = model(torch.randn(2, 2, size, size))
    assert out.shape == (2, 1, size, size)
    # every attention block runs at the resolution it was declared for
    assert all(declared == actual for declared, actual in seen)
    # encoder + decoder at each requested resolution, plus the bottleneck (size / 16)
    assert sorted({r for r, _ in seen}) == sorted(attn)
    assert sum(1 for r, _ in seen if r == size // 4) == 1 + 2  # 1 down block, 2 up blocks


def test_2d_without_middle_attention_only_requested_resolutions():
    model = AttnResUNet2D(1, 1, **net2d(channels=[4, 4, 8, 8, 8], attention_res=[32], image_size=64,
                                        middle_attention=False))
    res = {m.resolution for m in model.modules() if isinstance(m, SpatialSelfAttention2D)}
    assert res == {32}


def test_2d_reference_widths_build():
    model = build_network("itermask2", 2, net2d(image_size=128))
    res = sorted({m.resolution for m in model.modules() if isinstance(m, SpatialSelfAttention2D)})
    assert res == [8, 16, 32]
    assert count_parameters(model) > 1e6


def test_attention_block_matches_explicit_softmax_attention():
    torch.manual_seed(0)
    block = SpatialSelfAttention2D(4, num_heads=2).eval()
    torch.nn.init.normal_(block.proj.weight)
    x = torch.randn(1, 4, 3, 5)
    with torch.no_grad():
        got = block(x)
        h = block.norm(x)
        qkv = torch.einsum("oc,bchw->bohw", block.qkv.weight[:, :, 0, 0], h) + block.qkv.bias[None, :, None, None]
        q, k, v = qkv.reshape(1, 3, 2, 2, 15).unbind(1)  # (b, heads, ch, n)
        w = torch.softmax(torch.einsum("bhcn,bhcm->bhnm", q, k) / 2 ** 0.5, dim=-1)
        a = torch.einsum("bhnm,bhcm->bhcn", w, v).reshape(1, 4, 3, 5)
        want = x + block.proj(a)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_2d_invalid_attention_resolution():
    with pytest.raises(ConfigError, match="attention_res"):
        build_network("itermask2", 2, net2d(image_size=64, attention_res=[20]))


def test_build_network_config_errors():
    with pytest.raises(ConfigError, match="image_size"):
        build_network("itermask2", 2, net2d(image_size=None))
    with pytest.raises(ConfigError, match="unknown network keys"):
        build_network("itermask3d", 2, net3d(chanels=[1, 2]))
    with pytest.raises(ConfigError, match="unknown method"):
        build_network("ae", 2, {})


@pytest.mark.parametrize("method, settings", [("itermask3d", NET3D), ("itermask2", net2d(image_size=32))])
def test_build_network_requires_every_setting(method, settings):
    """No setting falls back to a Python default: a missing one (e.g. a model file's meta written
    before the key existed) is an InputError naming it."""
    for key in settings:
        with pytest.raises(InputError, match=f"lack \\['{key}'\\]"):
            build_network(method, 2, {k: v for k, v in settings.items() if k != key})
    with pytest.raises(InputError, match="input_skip"):
        build_network("itermask3d", 2, {"channels": [2, 4]})


def test_save_load_roundtrip(tmp_path):
    cfg = net2d(channels=[4, 4, 8], attention_res=[8], image_size=32, num_res_blocks=1)
    from itermask.inference.model import load_trained

    torch.manual_seed(1)
    models = {"first": build_network("itermask2", 1, cfg), "masked": build_network("itermask2", 2, cfg)}
    for m in models.values():  # make the zero-initialised output layers non-trivial
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.1)
    meta = {"method": "itermask2", "network": cfg, "in_channels": {"first": 1, "masked": 2},
            "calibration": {"tau": 0.5}}
    path = tmp_path / "model.pt"
    save_models(path, models, meta)
    loaded, meta2 = load_trained(path, "cpu", channels_last=True)
    assert meta2 == meta
    x = torch.randn(2, 2, 32, 32)
    for k, m in models.items():
        m.eval()
        inp = x[:, :1] if k == "first" else x
        with torch.no_grad():
            assert torch.equal(m(inp), loaded[k](inp))
        assert not loaded[k].training


def test_load_trained_errors(tmp_path):
    from itermask.inference.model import load_trained

    with pytest.raises(InputError, match="does not exist"):
        load_trained(tmp_path / "none.pt", "cpu", channels_last=True)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match="cannot read"):
        load_trained(bad, "cpu", channels_last=True)
    cfg = net3d(channels=[2, 4])
    path = tmp_path / "m.pt"
    save_models(path, {"masked": build_network("itermask3d", 2, cfg)},
                {"method": "itermask3d", "network": net3d(channels=[2, 8]), "in_channels": {"masked": 2}})
    with pytest.raises(InputError, match="does not match"):
        load_trained(path, "cpu", channels_last=True)
    old = tmp_path / "old.pt"  # a meta without a network setting: no Python default fills it in
    save_models(old, {"masked": build_network("itermask3d", 2, cfg)},
                {"method": "itermask3d", "network": {"channels": [2, 4]}, "in_channels": {"masked": 2}})
    with pytest.raises(InputError, match="lack \\['dropout', 'residual', 'input_skip'\\]") as err:
        load_trained(old, "cpu", channels_last=True)
    assert err.value.path == str(old)


# ----------------------------------------------------------------------------------------
# The reference architectures (METHOD.md §5), by their layers
# ----------------------------------------------------------------------------------------
def _layer_types(model: torch.nn.Module) -> set[type]:
    return {type(m) for m in model.modules()}


def test_3d_reference_architecture():
    from torch import nn

    model = build_network("itermask3d", 2, NET3D)
    assert count_parameters(model) == 8_902_626
    convs = [[m for m in unit.modules() if isinstance(m, nn.Conv3d)] for unit in model.encoder]
    assert [unit[-1].out_channels for unit in convs] == [16, 32, 64, 128, 256]
    assert [unit[0].stride for unit in convs] == [(2, 2, 2)] * 4 + [(1, 1, 1)]  # 4 stride-2 levels + 1
    all_convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert all_convs[0].in_channels == 2 and all_convs[-1].out_channels == 1
    types = _layer_types(model)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    assert norms and all(type(m) is nn.BatchNorm3d for m in norms)
    assert not types & {nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm}
    drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    assert len(drops) == len(norms) and all(m.p == 0.2 for m in drops)
    acts = [m for m in model.modules() if type(m).__module__ == "torch.nn.modules.activation"]
    assert len(acts) == len(norms) and all(type(m) is nn.PReLU for m in acts)
    ups = [m for m in model.modules() if isinstance(m, nn.Upsample)]
    assert len(ups) == 4 and all(m.mode == "nearest" and m.scale_factor == 2 for m in ups)


def test_2d_reference_architecture():
    from torch import nn

    from itermask.core.networks.unet2d import _ResBlock2D

    model = build_network("itermask2", 2, net2d(image_size=128))
    level_blocks = [b for m in model.down for b in m.layers
                    if isinstance(b, _ResBlock2D) and isinstance(b.resample, nn.Identity)]
    assert [b.conv_in.out_channels for b in level_blocks] == [32, 32, 32, 32, 64, 64, 96, 96, 128, 128]
    assert model.inp.in_channels == 2 and model.out[-1].out_channels == 1
    assert build_network("itermask2", 1, net2d(image_size=128)).inp.in_channels == 1  # first-iteration model
    # attention at 32, 16 and 8 px of a 128 px slice: the levels of width 64, 96 and 128
    attn = {(m.resolution, m.qkv.in_channels) for m in model.modules() if isinstance(m, SpatialSelfAttention2D)}
    assert attn == {(32, 64), (16, 96), (8, 128)}
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    assert norms and all(type(m) is nn.BatchNorm2d for m in norms)
    assert not _layer_types(model) & {nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm}
    drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    assert len(drops) == sum(isinstance(m, _ResBlock2D) for m in model.modules())
    assert all(m.p == 0.1 for m in drops)


@pytest.mark.parametrize("shape", [(1, 2, 16, 32, 32), (1, 2, 32, 32, 16)])
def test_3d_runs_at_any_size_divisible_by_16(shape):
    # an axis of 16 reaches the 4th encoder level at 2 voxels, where PyTorch's padded
    # AvgPool3d(3, 2, 1) refused it (METHOD.md §5: any size divisible by 16 must run)
    model = build_network("itermask3d", 2, net3d(channels=[2, 4, 4, 8, 8])).eval()
    with torch.no_grad():
        out = model(torch.randn(*shape))
    assert out.shape == (1, 1, *shape[2:])


def test_residual_pool_equals_the_padded_average_pool_it_replaces():
    from itermask.core.networks.unet3d import _PaddedAvgPool3d

    x = torch.randn(2, 3, 8, 6, 4)
    np.testing.assert_array_equal(_PaddedAvgPool3d(2)(x).numpy(), torch.nn.AvgPool3d(3, 2, 1)(x).numpy())
