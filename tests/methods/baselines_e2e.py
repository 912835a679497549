"""Tiny end-to-end runs of a reconstruction baseline (AE, DAE): train_experiment on a few
synthetic subjects, then infer_subject on a healthy volume and a lesion input (a volume in
3D, a slices file in 2D), as the train and infer rules call them."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

from support import experiment_settings

from itermask.inference.stage import infer_subject
from itermask.io.nifti import save_nifti
from itermask.training.loop import train_experiment

N = 32
NET3D = {"channels": [2, 4, 4, 8, 8]}
NET2D = {"spatial_dims": 2, "channels": [4, 4, 8, 8, 8], "attention_res": [8], "num_res_blocks": 1, "dropout": 0.1}
TRAIN = {"steps": 4, "batch_size": 2, "checkpoint_every": 2}


def sphere(shape: tuple[int, ...], radius: float) -> np.ndarray:
    g = np.indices(shape) - (np.array(shape)[:, None] - 1).reshape(-1, *[1] * len(shape)) / 2
    return np.sqrt((g**2).sum(0)) < radius


def smooth(rng: np.random.Generator, brain: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    x = gaussian_filter(rng.normal(size=brain.shape), sigma)
    x = x / x.std()
    return np.where(brain, x, x[brain].min()).astype(np.float32)


def volume_item(folder: Path, name: str, rng: np.random.Generator, label: bool = False) -> dict:
    brain = sphere((N, N, N), 12)
    x = smooth(rng, brain)
    item = {"subject": name, "image": str(folder / f"{name}_image.nii.gz"), "brain": str(folder / f"{name}_brain.nii.gz")}
    save_nifti(x, np.eye(4), item["image"])
    save_nifti(brain.astype(np.uint8), np.eye(4), item["brain"])
    if label:
        item["label"] = str(folder / f"{name}_label.nii.gz")
        save_nifti(sphere((N, N, N), 4).astype(np.uint8), np.eye(4), item["label"])
    return item


def slices_item(folder: Path, name: str, rng: np.random.Generator, n: int = 4) -> dict:
    brain = np.repeat(sphere((N, N), 12)[None], n, 0)
    x = np.stack([smooth(rng, b) for b in brain])
    path = folder / f"{name}_slices2d.npz"
    np.savez(path, image=x, hf=x * 0.1, brain=brain, label=np.repeat(sphere((N, N), 4)[None], n, 0),
             index=np.arange(10, 10 + n), role="train")
    return {"subject": name, "slices": str(path)}


def settings_of(method: str, dims: int, network: dict | None = None, train: dict | None = None):
    base = {} if method in ("ddpm", "autoddpm") else (NET3D if dims == 3 else NET2D)  # diffusion: own keys
    net = {**base, **(network or {})}
    tr = {**TRAIN, **({"rot90_p": 0.0} if dims == 2 else {}), **(train or {})}
    return experiment_settings(method, network=net, train=tr, infer={"batch_size": 3})


def train(tmp_path: Path, settings, dims: int, out: str = "m", **kw) -> tuple[Path, list[str]]:
    """Train on 3 subjects (1 validation); returns (model path, log lines). The subjects are
    written once per ``tmp_path``: a rerun (e.g. a resumed run) sees the same files, as a
    rerun job does (a rewritten file would start training afresh: its mtime is in the
    checkpoint's hash)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    listing = data / f"train_items_{dims}d.json"
    if listing.exists():
        items = json.loads(listing.read_text())
    else:
        rng = np.random.default_rng(0)
        make = volume_item if dims == 3 else slices_item
        items = [make(data, f"s{i}", rng) for i in range(3)]
        listing.write_text(json.dumps(items))
    o = tmp_path / out
    logs: list[str] = []
    kw.setdefault("channels_last", False)
    train_experiment(settings, items[:2], items[2:], out_model=str(o / "model.pt"), out_loss_tsv=str(o / "loss.tsv"),
                     out_loss_png=str(o / "loss.png"), checkpoint_dir=str(o / "ckpt"), device="cpu", amp=False,
                     log=logs.append, **kw)
    return o / "model.pt", logs


def infer(tmp_path: Path, model: Path, settings, dims: int) -> Path:
    """Inference on a healthy volume and a lesion input; returns the subject's output folder."""
    data = tmp_path / "data"
    rng = np.random.default_rng(1)
    healthy = volume_item(data, "h", rng)
    lesion = volume_item(data, "l", rng, label=True) if dims == 3 else slices_item(data, "l", rng)
    conditions = {"healthy": {k: v for k, v in healthy.items() if k != "subject"},
                  "lesion": {k: v for k, v in lesion.items() if k != "subject"}}
    out = tmp_path / "infer" / "sub-x"
    infer_subject(str(model), conditions, settings, str(out), dataset="toy", subject="x", device="cpu", amp=False,
                  channels_last=True, field_of_view_mm=float(N), log=lambda m: None)
    return out


def load(folder: Path, name: str) -> np.ndarray:
    return np.asarray(nib.load(str(folder / name)).dataobj, dtype=np.float32)


def result(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text())
