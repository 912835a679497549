"""Training outputs besides the model: the loss table and the loss curve."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from itermask.io.atomic import save_figure, write_text


def loss_keys(history: dict) -> list[str]:
    """Training-loss columns of a history: ``loss`` (primary network), then ``loss_<network>``."""
    return ["loss"] + sorted(k for k in history if k.startswith("loss_"))


def write_loss_tsv(path: str | Path, history: dict) -> None:
    """One row per step: step, loss(es) and the validation loss(es) at checkpoint steps."""
    keys = loss_keys(history)
    val_keys = sorted({k for v in history["val"].values() for k in v})
    lines = ["\t".join(["step", *keys, *val_keys])]
    for i in range(len(history["loss"])):
        val = history["val"].get(i + 1, {})
        row = [str(i + 1), *(f"{history[k][i]:.6g}" for k in keys),
               *(f"{val[k]:.6g}" if k in val else "" for k in val_keys)]
        lines.append("\t".join(row))
    write_text(path, "\n".join(lines) + "\n")


def plot_losses(path: str | Path, history: dict, title: str) -> None:
    """Training loss per step (and validation loss at checkpoints), log scale."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for key in loss_keys(history):
        if history[key]:
            name = key.replace("loss_", "")
            ax.plot(np.arange(1, len(history[key]) + 1), history[key], lw=0.8, alpha=0.8,
                    label="train" if key == "loss" else f"train ({name} network)")
    val_keys = sorted({k for v in history["val"].values() for k in v})
    for key in val_keys:
        pts = sorted((s, v[key]) for s, v in history["val"].items() if key in v)
        name = key.replace("val_loss_", "")
        ax.plot(*zip(*pts), "o-", ms=3, label="validation" if key == "val_loss" else f"validation ({name} network)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE")
    ax.set_title(title)
    ax.legend()
    save_figure(fig, path, dpi=100)
