"""AE baseline (METHOD.md §10): the backbone without skip connections, whole-image MSE, the
anomaly map (x - x_hat)^2 in the brain and its mean as the detection score."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines_e2e import N, infer, load, result, settings_of, train
from support import experiment_settings, network_settings

from itermask import methods
from itermask.core.networks import AttnResUNet2D, ResUNet3D
from itermask.errors import ConfigError
from itermask.methods.base import InputSpec

torch.set_num_threads(1)


def _nets(skip: bool) -> list[tuple[torch.nn.Module, torch.nn.Module, tuple[int, ...]]]:
    """(network, its bottleneck module, input shape): 3D residual UNet and 2D attention UNet."""
    torch.manual_seed(0)
    n3 = ResUNet3D(1, 1, **network_settings("itermask3d", channels=[2, 4, 4, 8, 8], dropout=0.2),
                   skip_connections=skip).eval()
    net2d = network_settings("itermask2", channels=[4, 4, 8, 8, 8], attention_res=[8], image_size=32, dropout=0.1,
                             num_res_blocks=1)
    n2 = AttnResUNet2D(1, 1, **net2d, skip_connections=skip).eval()
    with torch.no_grad():  # random weights everywhere (the 2D UNet zero-initialises its output layers)
        for p in [*n3.parameters(), *n2.parameters()]:
            p.normal_(0.0, 0.3)
    return [(n3, n3.encoder[-1], (1, 1, 32, 32, 32)), (n2, n2.middle, (1, 1, 32, 32))]


def _with_fixed_bottleneck(net, bottleneck, x, z):
    handle = bottleneck.register_forward_hook(lambda m, i, o: z)
    try:
        with torch.no_grad():
            return net(x)
    finally:
        handle.remove()


@pytest.mark.parametrize("k", [0, 1])
def test_output_depends_on_the_input_only_through_the_bottleneck(k):
    """With the bottleneck replaced by a fixed tensor z, two different inputs give the same
    output without skips, different outputs with them (the skips carry the input around)."""
    g = torch.Generator().manual_seed(1)
    x1, x2 = (torch.randn(_nets(False)[k][2], generator=g) for _ in range(2))
    for skip in (False, True):
        net, neck, _ = _nets(skip)[k]
        with torch.no_grad():
            z = torch.randn_like(neck_output(net, neck, x1))
        y1, y2 = _with_fixed_bottleneck(net, neck, x1, z), _with_fixed_bottleneck(net, neck, x2, z)
        assert torch.equal(y1, y2) is (not skip)


def neck_output(net, neck, x):
    out = []
    handle = neck.register_forward_hook(lambda m, i, o: out.append(o))
    try:
        net(x)
    finally:
        handle.remove()
    return out[0]


@pytest.mark.parametrize("k", [0, 1])
def test_a_perturbation_far_from_the_centre_reaches_the_bottleneck(k):
    net, neck, shape = _nets(False)[k]
    x = torch.zeros(shape)
    y = x.clone()
    y[(0, 0) + (1,) * (len(shape) - 2)] = 5.0  # a corner voxel/pixel
    with torch.no_grad():
        assert not torch.equal(neck_output(net, neck, x), neck_output(net, neck, y))


def test_skip_free_network_is_smaller():
    """The decoder of the AE sees no concatenated skips: fewer input channels, fewer weights."""
    n = [sum(p.numel() for p in net.parameters()) for net, _, _ in _nets(False) + _nets(True)]
    assert n[0] < n[2] and n[1] < n[3]


def test_inputs_and_checks():
    ae = methods.get("ae")
    s3, s2 = experiment_settings("ae"), experiment_settings("ae", network={"spatial_dims": 2},
                                                          train={"rot90_p": 0.0})
    assert all(ae.condition_inputs(s3, c) == InputSpec("volume") for c in ("val", "lesion", "healthy", "spike"))
    assert ae.train_inputs(s3) == InputSpec("volume")
    assert ae.train_inputs(s2) == ae.condition_inputs(s2, "val") == ae.condition_inputs(s2, "lesion") == InputSpec("slices")
    assert ae.condition_inputs(s2, "healthy") == ae.condition_inputs(s2, "ghosting-s1") == InputSpec("volume")
    assert s3.infer["score"] == "mean_error"
    with pytest.raises(ConfigError, match="no variant 'no_freq'"):
        experiment_settings("ae", "no_freq")
    with pytest.raises(ConfigError, match="no binary mask"):
        experiment_settings("ae", infer={"score": "mask_size"})
    with pytest.raises(ConfigError, match="rot90_axes"):
        experiment_settings("ae", network={"spatial_dims": 2})  # the 3D default axes [0, 2]


def test_loss_is_the_whole_image_mse():
    ae = methods.get("ae")
    x = torch.randn(2, 1, 8, 8)
    zero = lambda t: torch.zeros_like(t)  # noqa: E731
    assert float(ae.losses(None, {"net": zero}, {"image": x}, None)["net"]) == pytest.approx(float((x**2).mean()))
    assert float(ae.losses(None, {"net": lambda t: t}, {"image": x}, None)["net"]) == 0.0


@pytest.mark.parametrize("dims", [3, 2])
def test_train_and_infer(tmp_path, dims):
    s = settings_of("ae", dims)
    model, logs = train(tmp_path, s, dims)
    assert any("step 4/4" in line for line in logs) and (model.parent / "loss.png").exists()
    tsv = (model.parent / "loss.tsv").read_text().splitlines()
    assert "val_loss" in tsv[0].split("\t") and len(tsv) > 1
    out = infer(tmp_path, model, s, dims)
    for cond in ("healthy", "lesion"):
        f = out / cond
        r = result(f)
        assert r["score_name"] == "mean_error" and r["method"] == "ae"
        assert not (f / "mask.nii.gz").exists() and (f / "error.nii.gz").exists()
        error, brain = load(f, "error.nii.gz"), load(f, "brainmask.nii.gz") > 0
        assert np.all(error[~brain] == 0) and r["score"] == pytest.approx(float(error[brain].mean()), rel=1e-5)
    assert result(out / "healthy")["kind"] == ("3d" if dims == 3 else "slicewise")
    assert load(out / "healthy", "error.nii.gz").shape == (N, N, N)
    lesion = out / "lesion"
    if dims == 3:  # known answer: E = (x - x_hat)^2 from the written input and reconstruction
        x = load(lesion.parent.parent.parent / "data", "l_image.nii.gz")
        brain = load(lesion, "brainmask.nii.gz") > 0
        expected = np.where(brain, (x - load(lesion, "recon.nii.gz")) ** 2, 0)
        np.testing.assert_allclose(load(lesion, "error.nii.gz"), expected, rtol=1e-5, atol=1e-6)
        assert (lesion / "label.nii.gz").exists()
        _evaluates_without_a_mask(tmp_path, out)
    else:
        assert result(lesion)["kind"] == "2d" and load(lesion, "error.nii.gz").shape == (N, N, 4)


def _evaluates_without_a_mask(tmp_path, out):
    """Evaluation and figures take a method without mask.nii.gz: thresholded rows, no
    iterative_mask row, an overlay figure."""
    import pandas as pd

    from itermask.evaluation.evaluate import evaluate_experiment
    from itermask.evaluation.figures import make_figures

    m = tmp_path / "metrics"
    m.mkdir()
    runs = [("toy", "x", str(out))]
    evaluate_experiment("e", runs, str(m / "seg.tsv"), str(m / "det.tsv"), str(m / "scores.tsv"),
                        protocols=["paper", "per_image_best"], honest_source="healthy_fpr", honest_fpr=0.01, size_bins=[10, 100], pooled_anomalies=[])
    seg = pd.read_csv(m / "seg.tsv", sep="\t")
    assert sorted(seg["protocol"]) == ["paper", "per_image_best"]
    assert set(pd.read_csv(m / "det.tsv", sep="\t")["score_name"]) == {"mean_error"}
    figures = make_figures("e", runs, str(m / "seg.tsv"), str(m / "scores.tsv"), str(tmp_path / "fig"))
    assert any("overlay_toy_sub-x" in f for f in figures)
