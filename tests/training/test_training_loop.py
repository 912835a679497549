"""Training loop: exact resume, fresh start over changed data, learning, precision choice,
calibration, batches."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from support import experiment_settings

from itermask.errors import ConfigError
from itermask.inference.model import load_trained
from itermask.io.nifti import save_nifti
from itermask.methods import get as get_method
from itermask.training.data import Samples, epoch_order, make_batch, total_steps
from itermask.core.networks.layout import in_layout
from itermask.training.loop import check_train_settings, ema_update, new_state, optimise, train_experiment
from itermask.training.precision import Precision, pick_precision

torch.set_num_threads(1)

NET3D = {"channels": [2, 4, 4, 8, 8], "dropout": 0.2}
NET2D = {"channels": [4, 4, 8, 8, 8], "attention_res": [8], "dropout": 0.1, "num_res_blocks": 1}


def smooth_volume(rng: np.random.Generator, brain: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    x = gaussian_filter(rng.normal(size=brain.shape), sigma)
    x = x / x.std() * brain
    return np.where(brain, x, x[brain].min()).astype(np.float32)


def sphere(shape: tuple[int, ...], radius: float) -> np.ndarray:
    g = np.indices(shape) - (np.array(shape)[:, None] - 1).reshape(-1, *[1] * len(shape)) / 2
    return np.sqrt((g**2).sum(0)) < radius


def make_items_3d(folder: Path, n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    brain = sphere((32, 32, 32), 12)
    items = []
    for i in range(n):
        x = smooth_volume(rng, brain)
        hf = x - gaussian_filter(x, 1.0)
        item = {"subject": f"s{i}"}
        for key, arr in (("image", x), ("hf", hf), ("brain", brain)):
            item[key] = str(folder / f"s{i}_{key}.nii.gz")
            save_nifti(arr, np.eye(4), item[key])
        items.append(item)
    return items


def make_items_2d(folder: Path, n: int, seed: int = 0, slices: int = 4) -> list[dict]:
    rng = np.random.default_rng(seed)
    brain = np.repeat(sphere((32, 32), 12)[None], slices, 0)
    brain[-1] = False  # an empty slice: must be skipped
    items = []
    for i in range(n):
        x = np.stack([smooth_volume(rng, b, 3.0) if b.any() else np.full(b.shape, -3, np.float32) for b in brain])
        hf = x - gaussian_filter(x, (0, 1, 1))
        path = folder / f"s{i}_slices2d.npz"
        np.savez(path, image=x, hf=hf.astype(np.float32), brain=brain, label=np.zeros_like(brain),
                 index=np.arange(slices), role="train")
        items.append({"subject": f"s{i}", "slices": str(path)})
    return items


def run(method, variant, train, val, cfg, out: Path, seed: int = 0, **kw):
    logs: list[str] = []
    kw.setdefault("device", "cpu")
    kw.setdefault("amp", False)  # fp32: the known answers hold on any CPU
    kw.setdefault("channels_last", False)
    settings = experiment_settings(method, variant, seed=seed, training=True, **cfg)  # what rule train passes
    train_experiment(
        settings, train, val,
        out_model=str(out / "model.pt"), out_loss_tsv=str(out / "loss.tsv"), out_loss_png=str(out / "loss.png"),
        checkpoint_dir=str(out / "ckpt"), log=logs.append, **kw,
    )
    return logs


def load_models(path):
    return load_trained(path, "cpu", channels_last=True)


def assert_same_weights(a: Path, b: Path) -> None:
    ma, meta_a = load_models(a)
    mb, meta_b = load_models(b)
    assert ma.keys() == mb.keys() and meta_a == meta_b
    for k in ma:
        sa, sb = ma[k].state_dict(), mb[k].state_dict()
        assert sa.keys() == sb.keys()
        for name in sa:
            assert torch.equal(sa[name], sb[name]), f"{k}.{name} differs"


# --------------------------------------------------------------------------------------


def test_resume_equals_uninterrupted_3d(tmp_path):
    items = make_items_3d(tmp_path, 4)
    cfg = {"network": NET3D, "train": {"steps": 6, "batch_size": 2, "checkpoint_every": 2, "rot90_p": 0.5,
                                       "lr_drop_at": 0.5, "lr_after_drop": 1e-4}}
    run("itermask3d", "full", items[:3], items[3:], cfg, tmp_path / "a")
    logs = run("itermask3d", "full", items[:3], items[3:], cfg, tmp_path / "b", max_steps_this_run=5)
    assert not (tmp_path / "b" / "model.pt").exists()  # "killed" before the end
    logs = run("itermask3d", "full", items[:3], items[3:], cfg, tmp_path / "b")
    assert any("resuming from checkpoint at step 4/6" in line for line in logs)
    assert_same_weights(tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt")
    assert (tmp_path / "a" / "loss.tsv").read_text() == (tmp_path / "b" / "loss.tsv").read_text()
    assert len(list((tmp_path / "b" / "ckpt").glob("*/previous.pt"))) == 1
    # a different seed gives different weights (the weight comparison above can fail): the
    # weights themselves, not the meta (which holds the seed and config hash), must differ
    cfg["train"]["steps"] = 2
    run("itermask3d", "full", items[:3], items[3:], cfg, tmp_path / "c", seed=0)
    run("itermask3d", "full", items[:3], items[3:], cfg, tmp_path / "d", seed=1)
    mc, _ = load_models(tmp_path / "c" / "model.pt")
    md, _ = load_models(tmp_path / "d" / "model.pt")
    assert mc.keys() == md.keys()
    sc = {f"{k}.{n}": t for k in mc for n, t in mc[k].state_dict().items()}
    sd = {f"{k}.{n}": t for k in md for n, t in md[k].state_dict().items()}
    assert sc.keys() == sd.keys()
    assert any(not torch.equal(sc[n], sd[n]) for n in sc), "seeds 0 and 1 trained identical weights"


def test_resume_equals_uninterrupted_2d_with_ema_and_calibration(tmp_path):
    items = make_items_2d(tmp_path, 3)
    cfg = {"network": NET2D, "train": {"steps": 5, "batch_size": 4, "checkpoint_every": 2, "ema": 0.9},
           "infer": {"tau_percentile": 80}}
    run("itermask2", "full", items[:2], items[2:], cfg, tmp_path / "a")
    run("itermask2", "full", items[:2], items[2:], cfg, tmp_path / "b", max_steps_this_run=3)
    logs = run("itermask2", "full", items[:2], items[2:], cfg, tmp_path / "b")
    assert any("resuming from checkpoint at step 2/5" in line for line in logs)
    assert_same_weights(tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt")

    models, meta = load_models(tmp_path / "a" / "model.pt")
    assert set(models) == {"first", "masked"}
    assert meta["in_channels"] == {"first": 1, "masked": 2}
    assert meta["network"]["image_size"] == 32 and meta["spatial_dims"] == 2
    cal = meta["calibration"]
    tau = cal["tau"]
    assert np.isfinite(tau) and tau > 0
    assert cal["n_samples"] == 3  # 4 slices, the empty one skipped
    assert cal == load_models(tmp_path / "b" / "model.pt")[1]["calibration"]
    header = (tmp_path / "a" / "loss.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["step", "loss", "loss_first", "val_loss", "val_loss_first"]


def test_channels_last_trains_the_same_model_and_resumes_exactly(tmp_path):
    items = make_items_3d(tmp_path, 3)
    # dropout 0: dropout draws its mask in memory order, so with dropout the two layouts drop other voxels
    cfg = {"network": {**NET3D, "dropout": 0.0},
           "train": {"steps": 4, "batch_size": 2, "checkpoint_every": 2, "rot90_p": 0.5}}
    run("itermask3d", "full", items[:2], items[2:], cfg, tmp_path / "plain")
    run("itermask3d", "full", items[:2], items[2:], cfg, tmp_path / "a", channels_last=True)
    run("itermask3d", "full", items[:2], items[2:], cfg, tmp_path / "b", channels_last=True, max_steps_this_run=3)
    logs = run("itermask3d", "full", items[:2], items[2:], cfg, tmp_path / "b", channels_last=True)
    assert any("resuming from checkpoint at step 2/4" in line for line in logs)
    assert_same_weights(tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt")
    def losses(folder):  # another layout, the same arithmetic to rounding (Adam amplifies it in the weights)
        rows = [r.split("\t") for r in (tmp_path / folder / "loss.tsv").read_text().splitlines()[1:]]
        return np.array([float(v) for r in rows for v in r[1:] if v])

    assert losses("a").size == 6  # 4 training losses, 2 validation losses
    np.testing.assert_allclose(losses("a"), losses("plain"), rtol=1e-3)
    net = in_layout(torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3), torch.nn.Conv2d(4, 4, 3)), torch.channels_last_3d)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last_3d) and not net[0].weight.is_contiguous()
    assert net[1].weight.is_contiguous()  # 2D weights keep their layout
    # a 2D method trains with the setting on (its 4-D tensors keep their layout)
    items2d = make_items_2d(tmp_path, 2)
    cfg2d = {"network": NET2D, "train": {"steps": 1, "batch_size": 2, "checkpoint_every": 1}}
    run("itermask2", "full", items2d[:1], items2d[1:], cfg2d, tmp_path / "2d", channels_last=True)
    assert (tmp_path / "2d" / "model.pt").exists()


def test_changed_config_starts_fresh(tmp_path):
    items = make_items_3d(tmp_path, 2)
    cfg = {"network": NET3D, "train": {"steps": 2, "batch_size": 1, "checkpoint_every": 1, "rot90_p": 0.0}}
    run("itermask3d", "no_freq", items[:1], items[1:], cfg, tmp_path / "a", max_steps_this_run=1)
    (first,) = (tmp_path / "a" / "ckpt").iterdir()
    before = (first / "latest.pt").read_bytes()
    cfg["train"]["lr"] = 5e-4
    logs = run("itermask3d", "no_freq", items[:1], items[1:], cfg, tmp_path / "a")
    assert any("starting at step 0" in line for line in logs)
    assert not any("resuming" in line for line in logs)
    folders = sorted((tmp_path / "a" / "ckpt").iterdir())
    assert len(folders) == 2 and (first / "latest.pt").read_bytes() == before  # its own folder; the first kept
    (second,) = set(folders) - {first}
    assert any(str(second) in line for line in logs)
    models, meta = load_models(tmp_path / "a" / "model.pt")
    assert meta["in_channels"] == {"masked": 1} and meta["variant"] == "no_freq"


def weights(path: Path) -> dict[str, torch.Tensor]:
    models, _ = load_models(path)
    return {f"{k}.{n}": t for k, m in models.items() for n, t in m.state_dict().items()}


def test_changed_input_data_starts_fresh_and_unchanged_data_resumes(tmp_path):
    """The same item paths over regenerated data (preprocessing rerun): training starts at step 0
    instead of "resuming" the finished checkpoint of the old data and saving its weights."""
    items = make_items_3d(tmp_path, 2)
    cfg = {"network": NET3D, "train": {"steps": 2, "batch_size": 1, "checkpoint_every": 1, "rot90_p": 0.0}}
    run("itermask3d", "no_freq", items[:1], items[1:], cfg, tmp_path / "a")
    shutil.copy(tmp_path / "a" / "model.pt", tmp_path / "first.pt")
    logs = run("itermask3d", "no_freq", items[:1], items[1:], cfg, tmp_path / "a")  # unchanged: resumes
    assert any("resuming from checkpoint at step 2/2" in line for line in logs)
    assert_same_weights(tmp_path / "first.pt", tmp_path / "a" / "model.pt")

    image = Path(items[0]["image"])
    before = image.stat().st_mtime_ns
    (tmp_path / "other").mkdir()
    other = make_items_3d(tmp_path / "other", 1, seed=7)
    shutil.copyfile(other[0]["image"], image)  # new content at the same path
    os.utime(image, ns=(before + 10**9, before + 10**9))  # a new mtime, also on a coarse file-system clock
    logs = run("itermask3d", "no_freq", items[:1], items[1:], cfg, tmp_path / "a")
    assert any("starting at step 0" in line for line in logs)
    assert not any("resuming" in line for line in logs)
    assert len(list((tmp_path / "a" / "ckpt").iterdir())) == 2  # the old data's checkpoint kept apart
    old, new = weights(tmp_path / "first.pt"), weights(tmp_path / "a" / "model.pt")
    assert old.keys() == new.keys() and not all(torch.equal(old[k], new[k]) for k in old)
    # a changed validation item starts fresh as well; the new training data's run is found again
    logs = run("itermask3d", "no_freq", items[:1], items[1:], cfg, tmp_path / "a")
    assert any("resuming from checkpoint at step 2/2" in line for line in logs)
    os.utime(items[1]["brain"], ns=(before + 2 * 10**9, before + 2 * 10**9))
    logs = run("itermask3d", "no_freq", items[:1], items[1:], cfg, tmp_path / "a", max_steps_this_run=0)
    assert any("starting at step 0" in line for line in logs)


def test_resume_with_an_empty_saved_scaler_state_into_an_enabled_scaler():
    """A checkpoint from CPU (or bf16: scaler disabled, empty state) resumed where fp16 needs a
    scaler, and the reverse: TrainState.load skips the scaler state instead of failing."""
    s = experiment_settings("itermask3d", train={"steps": 2}).train
    cpu, fp16 = pick_precision("cpu", False), Precision(False, torch.float32, True, True)  # fp16's scaler, on CPU

    def state(precision):
        torch.manual_seed(0)
        return new_state({"masked": torch.nn.Linear(2, 1)}, s, 2, torch.device("cpu"), precision, "masked")

    saved = state(cpu).state_dict("h")
    assert saved["scalers"]["masked"] == {}
    target = state(fp16)
    assert target.scalers["masked"].is_enabled()
    target.load(saved)
    assert target.scalers["masked"].get_scale() == 65536.0  # starts fresh
    full = target.state_dict("h")
    assert full["scalers"]["masked"]["scale"] == 65536.0
    back = state(cpu)
    back.load(full)  # a non-empty state into a disabled scaler
    assert not back.scalers["masked"].is_enabled()


def test_loss_decreases_on_smooth_volumes(tmp_path):
    items = make_items_3d(tmp_path, 3)
    cfg = {"network": {"channels": [2, 4, 4, 8, 8], "dropout": 0.0},
           "train": {"steps": 25, "batch_size": 2, "lr": 3e-3, "checkpoint_every": 25, "rot90_p": 0.0,
                     "lr_drop_at": None}}
    run("itermask3d", "full", items, items[:1], cfg, tmp_path / "o")
    rows = [line.split("\t") for line in (tmp_path / "o" / "loss.tsv").read_text().splitlines()[1:]]
    loss = np.array([float(r[1]) for r in rows])
    assert len(loss) == 25
    assert loss[-5:].mean() < 0.5 * loss[:3].mean(), loss
    assert (tmp_path / "o" / "loss.png").stat().st_size > 1000
    # IterMask3D's fixed tau: calibrated on the validation volumes when training ends (issue 10)
    cal = load_models(tmp_path / "o" / "model.pt")[1]["calibration"]
    assert cal["percentile"] == 80 and cal["n_samples"] == 1


def test_pick_precision(monkeypatch):
    for device, amp, bf16 in (("cpu", True, True), ("cpu", True, False), ("cpu", False, True), ("cuda", False, True),
                              ("cuda", False, False)):
        p = pick_precision(device, amp, bf16_supported=bf16)  # training steps on CPU, or precision fp32
        assert not p.autocast and p.dtype == torch.float32 and not p.scaler and p.amp == amp, (device, amp, bf16)
    p = pick_precision("cuda", True, bf16_supported=True)
    assert p.autocast and p.dtype == torch.bfloat16 and not p.scaler
    p = pick_precision("cuda", True, bf16_supported=False)
    assert p.autocast and p.dtype == torch.float16 and p.scaler
    # without the override, the GPU's bf16 query decides (queried by name only: no CUDA tensor is made)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    p = pick_precision("cuda", True)
    assert p.autocast and p.dtype == torch.bfloat16 and not p.scaler
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    p = pick_precision("cuda", True)
    assert p.autocast and p.dtype == torch.float16 and p.scaler


def test_steps_from_epochs_and_setting_errors():
    s = experiment_settings("itermask3d", train={"steps": None, "epochs": 3, "batch_size": 2}).train
    assert total_steps(s, 5) == 9  # 3 epochs x ceil(5/2)
    with pytest.raises(ConfigError, match="exactly one"):
        experiment_settings("itermask3d", train={"steps": 10, "epochs": 3})
    with pytest.raises(ConfigError, match="emma"):
        experiment_settings("itermask2", train={"steps": 10, "emma": 0.9})
    bad = experiment_settings("itermask3d", train={"steps": 10, "rot90_p": 0.5, "rot90_axes": [0, 1]}).train
    with pytest.raises(ConfigError, match="rot90_axes"):
        check_train_settings(bad, (16, 8, 16))
    with pytest.raises(ConfigError, match="rot90_axes"):  # a 3D plane on 2D slices
        check_train_settings(experiment_settings("itermask3d", train={"steps": 1, "rot90_p": 0.5}).train, (32, 32))


def test_ema_update_known_answer():
    model, ema = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
        for p in ema.parameters():
            p.fill_(0.0)
    ema_update(ema, model, 0.9, step=1000, warmup=False)
    assert all(torch.allclose(p, torch.tensor(0.1)) for p in ema.parameters())
    ema_update(ema, model, 0.9999, step=0, warmup=True)  # decay min(0.9999, 1/10) = 0.1
    assert all(torch.allclose(p, torch.tensor(0.1 * 0.1 + 0.9)) for p in ema.parameters())


def _toy_samples(n: int = 3) -> Samples:
    rng = np.random.default_rng(0)
    brain = np.repeat(sphere((16, 16, 16), 6)[None], n, 0)
    image = torch.from_numpy(rng.normal(size=(n, 1, 16, 16, 16)).astype(np.float32))
    return Samples(image, image * 2, brain, [f"s{i}" for i in range(n)])


def _batch(data, step, **train):
    settings = experiment_settings("itermask3d", train={"steps": 10, "batch_size": 3, "rot90_p": 0.0, **train})
    method = get_method("itermask3d")
    b = make_batch(data, step, settings.train, 0, lambda br, i, e: method.corrupt(settings, br, i, e))
    return b["image"], b["hf"], b["mask"]


def test_make_batch_masks_fresh_or_fixed_and_rotation():
    data = _toy_samples()
    # batch = all 3 samples, so step 0 is epoch 0 and step 1 is epoch 1
    order0, order1 = epoch_order(0, 0, 3), epoch_order(0, 1, 3)
    _, _, m0 = _batch(data, 0)
    _, _, m1 = _batch(data, 1)
    m0 = {int(i): m0[b, 0] for b, i in enumerate(order0)}
    m1 = {int(i): m1[b, 0] for b, i in enumerate(order1)}
    assert all(m0[i].any() and not torch.equal(m0[i], m1[i]) for i in range(3))
    assert all(not (m0[i] & ~torch.from_numpy(data.brain[i])).any() for i in range(3))  # inside the brain
    _, _, f0 = _batch(data, 0, fixed_masks=True)
    _, _, f1 = _batch(data, 1, fixed_masks=True)
    f0 = {int(i): f0[b, 0] for b, i in enumerate(order0)}
    f1 = {int(i): f1[b, 0] for b, i in enumerate(order1)}
    assert all(torch.equal(f0[i], f1[i]) for i in range(3))
    # rot90 with p=1 rotates image, hf and mask of a sample by the same k quarter turns in the
    # plane of axes (0, 2), k drawn from 1, 2, 3 (MONAI RandRotate90's max_k 3), each k in turn
    turns = []
    for step in range(0, 12, 3):  # steps that start an epoch: samples in epoch_order
        order = epoch_order(0, step, 3)
        x, hf, m = _batch(data, step, rot90_p=1.0)
        _, _, m_plain = _batch(data, step)
        for b, i in enumerate(order):
            k = [k for k in range(4) if torch.equal(x[b, 0], torch.rot90(data.image[i, 0], k, (0, 2)))]
            assert len(k) == 1 and k[0] in (1, 2, 3)
            assert torch.equal(hf[b, 0], torch.rot90(data.hf[i, 0], k[0], (0, 2)))
            assert torch.equal(m[b, 0], torch.rot90(m_plain[b, 0], k[0], (0, 2)))
            turns.append(k[0])
    assert set(turns) == {1, 2, 3}


def test_training_stores_the_calibration_of_its_saved_masked_network(tmp_path):
    """The numbers of a calibration (tau, all 99 quantiles) are checked against hand-rebuilt
    errors in `test_calibrate_known_answer_with_a_constant_network`; here, what training wires
    in: the model file's calibration is that of the *saved* masked network (the EMA weights, not
    the raw ones, nor the first network) on the validation items, at the default HF radius."""
    from itermask.methods._itermask import calibrate
    from itermask.training.data import load_samples

    items = make_items_2d(tmp_path, 2)
    cfg = {"network": NET2D, "train": {"steps": 2, "batch_size": 4, "checkpoint_every": 2, "ema": 0.9},
           "infer": {"tau_percentile": 80}}
    run("itermask2", "full", items[:1], items[1:], cfg, tmp_path / "m")
    models, meta = load_models(tmp_path / "m" / "model.pt")
    assert meta["weights"] == "ema" and meta["hf_radius"] == 15
    cal = meta["calibration"]
    assert cal["quantile_percentiles"] == list(range(1, 100)) and len(cal["quantiles"]) == 99
    settings = experiment_settings("itermask2", "full", seed=0, training=True, **cfg)
    val = load_samples(items[1:], "slices", dataset=settings.dataset)
    want = calibrate("itermask2", settings, models["masked"], "full", val, torch.device("cpu"),
                     pick_precision("cpu", False), lambda _: None)["calibration"]  # run() trains fp32
    assert cal["n_voxels"] == want["n_voxels"] and cal["n_samples"] == want["n_samples"] == 3
    assert cal["tau"] == pytest.approx(want["tau"], rel=1e-6)
    np.testing.assert_allclose(cal["quantiles"], want["quantiles"], rtol=1e-6)
    # the first network's errors give another calibration: the comparison depends on the network
    first = calibrate("itermask2", settings, models["first"], "hf_only", val, torch.device("cpu"),
                      pick_precision("cpu", False), lambda _: None)["calibration"]
    assert first["tau"] != pytest.approx(cal["tau"], rel=1e-6)


def test_the_stored_hf_images_are_fed_to_the_model(tmp_path, monkeypatch):
    """Training reads the HF images of its items (files named by their radius) and never recomputes them."""
    from scipy.ndimage import gaussian_filter

    from itermask.core import model_input

    items = make_items_2d(tmp_path, 2)  # stored hf = x - gaussian(x): not an FFT high-frequency image
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = model_input.compose_input

    def spy(x, hf, mask, variant="full", **kw):
        seen.append((x.detach().clone(), hf.detach().clone()))
        return real(x, hf, mask, variant, **kw)

    monkeypatch.setattr(model_input, "compose_input", spy)
    cfg = {"network": NET2D, "train": {"steps": 2, "batch_size": 4, "checkpoint_every": 2, "ema": 0.9},
           "infer": {"tau_percentile": 80}, "hf_radius": 3}
    run("itermask2", "full", items[:1], items[1:], cfg, tmp_path / "r3")
    assert len(seen) >= 4  # two models x two steps, plus validation
    for x, hf in seen:
        for b in range(x.shape[0]):
            xb = x[b, 0].numpy()
            np.testing.assert_allclose(hf[b, 0].numpy(), xb - gaussian_filter(xb, (1.0, 1.0)), atol=1e-5)
    assert load_models(tmp_path / "r3" / "model.pt")[1]["hf_radius"] == 3


class _Constant(torch.nn.Module):
    """Stand-in network: outputs ``value`` everywhere (one channel), whatever its input."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        return torch.full_like(inp[:, :1], self.value)


@pytest.mark.parametrize("method,shape,seed", [("itermask2", (32, 32), 0), ("itermask3d", (16, 16, 16), 5)])
def test_calibrate_known_answer_with_a_constant_network(method, shape, seed):
    """A network that outputs 0.5 has squared error (x - 0.5)^2, so tau must be the 80th percentile
    of (x - 0.5)^2 over the seeded validation masks, rebuilt here as ``validation_errors`` documents:
    fixed masks ``training_mask(brain, mask_rng(derive_seed(seed, 4) % 2**32, i, 0, fixed=True)) & brain``."""
    from itermask.core.masks import mask_rng, training_mask
    from itermask.io.seeds import derive_seed
    from itermask.methods._itermask import calibrate

    rng = np.random.default_rng(1)
    n = 3
    brain = np.repeat(sphere(shape, 0.4 * shape[0])[None], n, 0)
    x = rng.normal(size=(n, 1, *shape)).astype(np.float32)
    data = Samples(torch.from_numpy(x), torch.from_numpy(x), brain, [f"s{i}" for i in range(n)])
    settings = experiment_settings(method, seed=seed, infer={"tau_percentile": 80, "batch_size": 2})
    out = calibrate(method, settings, _Constant(0.5), "full", data, torch.device("cpu"), pick_precision("cpu", False),
                    lambda _: None)["calibration"]

    mask_seed = derive_seed(seed, 4) % (2**32)
    masks = np.stack([training_mask(brain[i], mask_rng(mask_seed, i, 0, True)) & brain[i] for i in range(n)])
    assert 0 < masks.sum() < brain.sum()  # a proper subset of the brain, so the masks matter
    errs = (x[:, 0][masks].astype(np.float64) - 0.5) ** 2
    assert out["tau"] == pytest.approx(np.percentile(errs, 80), rel=1e-5)
    assert out["n_voxels"] == int(masks.sum()) and out["n_samples"] == n and out["percentile"] == 80
    assert out["quantile_percentiles"] == list(range(1, 100))
    np.testing.assert_allclose(out["quantiles"], np.percentile(errs, range(1, 100)), rtol=1e-5)
    # other masks (another seed's) give another tau: the comparison above depends on the masks
    other = np.stack([training_mask(brain[i], mask_rng(mask_seed + 1, i, 0, True)) & brain[i] for i in range(n)])
    assert np.percentile((x[:, 0][other] - 0.5) ** 2, 80) != pytest.approx(out["tau"], rel=1e-5)


def test_calibration_runs_at_inferences_precision_and_the_validation_loss_at_trainings(monkeypatch):
    """On a CPU with bf16 (precision auto): the calibrated tau comes from bf16 forward passes, as
    inference's reconstructions do, while the validation loss follows the fp32 training steps."""
    from itermask.io import device
    from itermask.methods._itermask import calibrate, validation_losses

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    seen = []

    class Probe(_Constant):
        def forward(self, inp):
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
            return super().forward(inp)

    brain = np.repeat(sphere((16, 16, 16), 6.4)[None], 2, 0)
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(2, 1, 16, 16, 16)).astype(np.float32))
    data = Samples(x, x, brain, ["s0", "s1"])
    settings = experiment_settings("itermask3d", infer={"tau_percentile": 80, "batch_size": 2})
    precision = pick_precision("cpu", True)  # config precision auto
    assert not precision.autocast  # CPU training steps: fp32
    calibrate("itermask3d", settings, Probe(0.5), "full", data, torch.device("cpu"), precision, lambda _: None)
    assert seen == [torch.bfloat16]
    validation_losses({"masked": Probe(0.5)}, {"masked": "full"}, data, 0, 2, torch.device("cpu"), precision, "masked")
    assert seen == [torch.bfloat16, None]


def test_3d_learning_rate_is_1e3_then_1e4_from_60_percent_of_the_steps():
    """The schema's 3D defaults (ref): Adam at 1e-3, one drop to 1e-4 from 60 % of training on."""
    s = experiment_settings("itermask3d", train={"steps": 10}).train
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    state = new_state({"masked": net}, s, 10, torch.device("cpu"), pick_precision("cpu", False), "masked")
    assert isinstance(state.optimizers["masked"], torch.optim.Adam)
    used = []
    for _ in range(10):
        used.append(state.optimizers["masked"].param_groups[0]["lr"])
        optimise(state, {"masked": net(torch.ones(1, 2)).pow(2).sum()}, s, "masked", "test")
    assert used == pytest.approx([1e-3] * 6 + [1e-4] * 4)


def test_rotation_draws_each_sample_with_probability_rot90_p():
    """RandRotate90(prob=0.1) per sample: about 10 % of 1,200 sample draws are turned."""
    data = _toy_samples()
    settings = experiment_settings("itermask3d", train={"steps": 400, "batch_size": 3, "rot90_p": 0.1})
    turned = 0
    for step in range(400):  # batch = all 3 samples: step = epoch
        x = make_batch(data, step, settings.train, 0, lambda br, i, e: {})["image"]
        turned += sum(not torch.equal(x[b], data.image[i]) for b, i in enumerate(epoch_order(0, step, 3)))
    assert 90 <= turned <= 150
