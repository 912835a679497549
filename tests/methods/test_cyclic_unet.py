"""Cyclic UNet baseline (METHOD.md §10): F (input -> intermediate sequence) and B (back),
trained on paired healthy scans; at test time x_hat = B(F(x)) from the input sequence alone.
The intermediate sequence travels from the DAG's items through the one reader into the
training batches; inference never reads it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines_e2e import NET2D, NET3D, N, load, result, slices_item, smooth, sphere

from itermask import methods
from itermask.config.study import Study
from itermask.errors import ConfigError, InputError
from itermask.inference.stage import infer_subject
from itermask.io.nifti import save_nifti
from itermask.io.samples import read_item
from itermask.methods.base import InputSpec
from itermask.methods.cyclic_unet import intermediate_sequence
from itermask.training.data import load_samples, make_batch, sequence_key
from itermask.training.loop import train_experiment

torch.set_num_threads(1)
CYCLIC = methods.get("cyclic_unet")


def config(method: str = "cyclic_unet", sequences=("FLAIR", "T1w", "T2w"), **exp) -> dict:
    exp = {"method": method, "dataset": "toy", "sequence": "FLAIR", "train": {"steps": 1}, **exp}
    return {
        "results_dir": "results", "seed": 0,
        "datasets": {"toy": {"pattern": "toy/{subject}_{sequence}.nii.gz", "sequences": list(sequences),
                             "brain_mask": {"method": "stripped"}, "splits": {"train": ["a"], "val": ["b"]}}},
        "preprocess": {"spacing_mm": 1.0, "box": [32, 32, 32]},
        "experiments": {"e": exp},
    }


def settings(dims: int = 3, **exp):
    net = {**(NET3D if dims == 3 else NET2D), **exp.pop("network", {})}
    train = {"steps": 4, "batch_size": 2, "checkpoint_every": 2, **({"rot90_p": 0.0} if dims == 2 else {}),
             **exp.pop("train", {})}
    infer = {"batch_size": 3, **exp.pop("infer", {})}
    return Study(config(network=net, train=train, infer=infer, **exp)).settings("e")


# -- inputs and config ----------------------------------------------------------------------
def test_intermediate_by_the_papers_rule_or_config():
    assert intermediate_sequence(settings()) == "T1w"  # FLAIR input -> T1w
    assert intermediate_sequence(settings(sequence="T2w")) == "FLAIR"  # otherwise FLAIR
    assert intermediate_sequence(settings(sequence="T2w", network={"intermediate": "T1w"})) == "T1w"


@pytest.mark.parametrize("dims, kind", [(3, "volume"), (2, "slices")])
def test_intermediate_is_a_training_input_only(dims, kind):
    s = settings(dims)
    assert CYCLIC.train_inputs(s) == InputSpec(kind, sequences=("T1w",))
    for condition in ("val", "lesion", "healthy", "spike", "failed_skullstrip"):
        assert CYCLIC.condition_inputs(s, condition).sequences == ()


def test_config_check_refuses_a_dataset_without_the_intermediate():
    with pytest.raises(ConfigError, match=r"trains on sequence 'T1w'.*dataset 'toy' has only \['FLAIR'\]"):
        Study(config(sequences=("FLAIR",)))
    Study(config(sequences=("FLAIR",), method="ae"))  # single-sequence data is fine for the others
    with pytest.raises(ConfigError, match="intermediate sequence must differ"):
        settings(network={"intermediate": "FLAIR"})
    with pytest.raises(ConfigError, match="no binary mask"):
        settings(infer={"score": "mask_size"})


# -- networks and losses --------------------------------------------------------------------
@pytest.mark.parametrize("dims, shape", [(3, (2, 1, N, N, N)), (2, (2, 1, N, N))])
def test_forward_and_backward_networks(dims, shape):
    s = settings(dims)
    meta = CYCLIC.build_networks(s, shape[2:])
    assert meta["in_channels"] == {"forward": 1, "backward": 1} and meta["network"]["intermediate"] == "T1w"
    nets = CYCLIC.networks_from_meta(meta)
    assert list(nets) == ["forward", "backward"] and nets["forward"] is not nets["backward"]
    x = torch.randn(shape)
    with torch.no_grad():
        for net in nets.values():
            assert net.eval()(x).shape == shape


def test_losses_and_the_cycle_known_answers():
    s = settings()
    x, y = torch.randn(2, 1, 8, 8, 8), torch.randn(2, 1, 8, 8, 8)
    nets = {"forward": lambda t: t + 1.0, "backward": lambda t: 2.0 * t}
    losses = CYCLIC.losses(s, nets, {"image": x, sequence_key("T1w"): y}, None)
    assert list(losses) == ["forward", "backward"]  # F on (x -> real y), B on (real y -> x)
    assert float(losses["forward"]) == pytest.approx(float(((x + 1 - y) ** 2).mean()), rel=1e-6)
    assert float(losses["backward"]) == pytest.approx(float(((2 * y - x) ** 2).mean()), rel=1e-6)
    assert torch.equal(CYCLIC.reconstructor(nets)(x), 2.0 * (x + 1.0))  # x_hat = B(F(x))


# -- the reader and the batches -------------------------------------------------------------
def paired_volume(folder, name, rng, label=False):
    """A subject with FLAIR (image) and a T1w that is a fixed function of it (learnable)."""
    brain = sphere((N, N, N), 12)
    x = smooth(rng, brain)
    item = {"subject": name}
    for key, arr in (("image", x), ("brain", brain.astype(np.uint8)), ("t1", np.where(brain, 1.0 - 0.5 * x, -2.0))):
        item[key] = str(folder / f"{name}_{key}.nii.gz")
        save_nifti(arr.astype(np.float32) if key != "brain" else arr, np.eye(4), item[key])
    item["sequences"] = {"T1w": item.pop("t1")}
    if label:
        item["label"] = str(folder / f"{name}_label.nii.gz")
        save_nifti(sphere((N, N, N), 4).astype(np.uint8), np.eye(4), item["label"])
    return item


def paired_slices(folder, name, rng, index=None):
    item = slices_item(folder, name, rng)
    with np.load(item["slices"]) as z:
        d = dict(z)
    if index is not None:
        d["index"] = np.asarray(index)
    path = folder / f"{name}_T1w_slices2d.npz"
    np.savez(path, **{**d, "image": np.where(d["brain"], 1.0 - 0.5 * d["image"], -3.0).astype(np.float32)})
    return {**item, "sequences": {"T1w": str(path)}}


def test_reader_and_batches_carry_the_further_sequence(tmp_path):
    rng = np.random.default_rng(0)
    items = [paired_volume(tmp_path, f"s{i}", rng) for i in range(3)]
    v = read_item(items[0])
    np.testing.assert_allclose(v.sequences["T1w"], np.where(v.brain, 1.0 - 0.5 * v.image, -2.0), atol=1e-6)
    data = load_samples(items, "volume")
    assert list(data.sequences) == ["T1w"] and data.sequences["T1w"].shape == data.image.shape
    train = settings().train.__class__(**{**vars(settings().train), "rot90_p": 1.0})
    batch = make_batch(data, 0, train, 0, lambda b, i, e: {})
    # the pairing survives the shuffle and the rot90 augmentation
    torch.testing.assert_close(torch.where(batch[sequence_key("T1w")] > -2, 1.0 - 0.5 * batch["image"], -2.0),
                               batch[sequence_key("T1w")], atol=1e-5, rtol=0)
    s = read_item(paired_slices(tmp_path, "p", rng))
    assert s.sequences["T1w"].shape == s.image.shape


def test_reader_errors_name_the_further_file(tmp_path):
    rng = np.random.default_rng(0)
    item = paired_volume(tmp_path, "s", rng)
    save_nifti(np.zeros((N, N, N - 2), np.float32), np.eye(4), item["sequences"]["T1w"])
    with pytest.raises(InputError, match="s_t1.nii.gz"):
        read_item(item, dataset="toy", subject="s")
    bad = paired_slices(tmp_path, "q", rng, index=[1, 2, 3, 4])
    with pytest.raises(InputError, match=r"q_T1w_slices2d.npz.*slices of sequence 'T1w'"):
        read_item(bad, dataset="toy", subject="q")


# -- tiny end-to-end ------------------------------------------------------------------------
@pytest.mark.parametrize("dims", [3, 2])
def test_train_then_infer_without_the_intermediate(tmp_path, dims):
    s = settings(dims)
    rng = np.random.default_rng(0)
    make = paired_volume if dims == 3 else paired_slices
    items = [make(tmp_path, f"s{i}", rng) for i in range(3)]
    out, logs = tmp_path / "m", []
    train_experiment(s, items[:2], items[2:], out_model=str(out / "model.pt"), out_loss_tsv=str(out / "loss.tsv"),
                     out_loss_png=str(out / "loss.png"), checkpoint_dir=str(out / "ckpt"), device="cpu", amp=False,
                     channels_last=False, log=logs.append)
    header = (out / "loss.tsv").read_text().splitlines()[0].split("\t")
    assert {"loss", "loss_backward", "val_loss", "val_loss_backward", "val_loss_cycle"} <= set(header)
    # inference reads the input sequence only: the intermediate files are gone (known answer)
    for item in items:
        for path in item["sequences"].values():
            (tmp_path / path).unlink()
    lesion = paired_volume(tmp_path, "l", rng, label=True) if dims == 3 else paired_slices(tmp_path, "l", rng)
    healthy = paired_volume(tmp_path, "h", rng)
    for item in (lesion, healthy):
        for path in item.pop("sequences").values():
            (tmp_path / path).unlink()
    conditions = {c: {k: v for k, v in i.items() if k != "subject"} for c, i in (("healthy", healthy), ("lesion", lesion))}
    folder = tmp_path / "infer"
    infer_subject(str(out / "model.pt"), conditions, s, str(folder), dataset="toy", subject="x", device="cpu", amp=False,
                  channels_last=True, field_of_view_mm=float(N), log=lambda m: None)
    for cond in ("healthy", "lesion"):
        r = result(folder / cond)
        assert r["method"] == "cyclic_unet" and r["score_name"] == "mean_error"
        assert not (folder / cond / "mask.nii.gz").exists()
    if dims == 3:  # known answer: the written reconstruction is B(F(x)) of the loaded networks
        from itermask.inference.model import load_trained

        nets, _ = load_trained(out / "model.pt", "cpu", channels_last=True)
        x = load(tmp_path, "l_image.nii.gz")
        with torch.no_grad():
            expected = nets["backward"](nets["forward"](torch.from_numpy(x)[None, None]))[0, 0].numpy()
        np.testing.assert_allclose(load(folder / "lesion", "recon.nii.gz"), expected, rtol=1e-4, atol=1e-5)
        brain = load(folder / "lesion", "brainmask.nii.gz") > 0
        np.testing.assert_allclose(load(folder / "lesion", "error.nii.gz"), np.where(brain, (x - expected) ** 2, 0),
                                   rtol=1e-4, atol=1e-5)
    else:
        assert result(folder / "healthy")["kind"] == "slicewise" and result(folder / "lesion")["kind"] == "2d"
