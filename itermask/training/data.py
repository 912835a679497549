"""Training data in memory and the batches of each step (pure functions of seed and step)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch

from itermask.config.settings import TrainSettings
from itermask.errors import InputError
from itermask.io.samples import read_slices_item, read_volume


def sequence_key(name: str) -> str:
    """Batch key of a further sequence's image (a method's ``InputSpec.sequences``)."""
    return f"sequence:{name}"


@dataclass
class Samples:
    """Training/validation samples: image, hf (n, 1, *spatial) float32 (hf None when the
    method reads none); brain (n, *spatial) bool; names ``subject`` or ``subject:slice``;
    ``sequences``: further sequences' images (n, 1, *spatial) by name (items' ``sequences``)."""

    image: torch.Tensor
    hf: torch.Tensor | None
    brain: np.ndarray
    names: list[str]
    sequences: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(self.image.shape[2:])


def _tensor(arrays: list[np.ndarray], stack: Callable) -> torch.Tensor:
    return torch.from_numpy(stack(arrays)[:, None].astype(np.float32))


def load_samples(items: list[Mapping[str, str]], kind: str, *, dataset: str | None = None) -> Samples:
    """Read training items with the one reader (``itermask.io.samples``).

    ``kind`` ``volume``: one sample per subject, all of one shape. ``slices``: one sample per
    slice with brain pixels, all of one size. Every item names the same further sequences.
    """
    images, hfs, brains, names, further = [], [], [], [], {}
    for item in items:
        subject = str(item["subject"])
        if kind == "volume":
            v = read_volume(item, dataset=dataset, subject=subject)
            if images and v.image.shape != images[0].shape:
                raise InputError(f"shape {v.image.shape} differs from the first subject's {images[0].shape}",
                                 path=item["image"], dataset=dataset, subject=subject)
            images.append(v.image), hfs.append(v.hf), brains.append(v.brain), names.append(subject)
            for q, arr in v.sequences.items():
                further.setdefault(q, []).append(arr)
            continue
        s = read_slices_item(item, dataset=dataset, subject=subject)
        if images and s.image.shape[1:] != images[0].shape[1:]:
            raise InputError(f"slice size {s.image.shape[1:]} differs from {images[0].shape[1:]}",
                             path=item["slices"], dataset=dataset, subject=subject)
        keep = s.has_brain
        images.append(s.image[keep]), hfs.append(s.hf[keep]), brains.append(s.brain[keep])
        names += [f"{subject}:{int(i)}" for i in s.index[keep]]
        for q, arr in s.sequences.items():
            further.setdefault(q, []).append(arr[keep])
    if not names:
        raise InputError(f"no training samples with brain in {len(items)} item(s)", dataset=dataset)
    stack = np.stack if kind == "volume" else np.concatenate
    hf = None if any(h is None for h in hfs) else _tensor(hfs, stack)
    missing = sorted(q for q, arrs in further.items() if len(arrs) != len(images))
    if missing:
        raise InputError(f"further sequences {missing} are not named by every item", dataset=dataset)
    sequences = {q: _tensor(arrs, stack) for q, arrs in further.items()}
    return Samples(_tensor(images, stack), hf, stack(brains), names, sequences)


def total_steps(settings: TrainSettings, n_train: int) -> int:
    """Number of optimiser steps: `steps`, or `epochs` * ceil(n_train / batch_size)."""
    if settings.steps is not None:
        return int(settings.steps)
    return int(settings.epochs) * math.ceil(n_train / int(settings.batch_size))


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """Sample order of one epoch (a permutation that depends only on seed and epoch)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), 7, int(epoch)])).permutation(n)


Corrupt = Callable[[np.ndarray, np.ndarray, int], dict[str, torch.Tensor]]


def make_batch(data: Samples, step: int, settings: TrainSettings, seed: int, corrupt: Corrupt) -> dict[str, torch.Tensor]:
    """CPU tensors (B, 1, *spatial) of training step `step` (0-based): ``image``, ``hf`` (if
    any), the further sequences (``sequence_key(name)``) and the method's
    ``corrupt(brains, sample_ids, epoch)`` tensors, each sample rotated by k·90° (k drawn from
    1, 2, 3) in the plane ``rot90_axes`` with probability ``rot90_p`` (the same draws for all
    its tensors)."""
    n, batch_size = len(data), int(settings.batch_size)
    per_epoch = math.ceil(n / batch_size)
    epoch, pos = divmod(step, per_epoch)
    idx = epoch_order(seed, epoch, n)[pos * batch_size:(pos + 1) * batch_size]
    batch = {"image": data.image[idx]}
    if data.hf is not None:
        batch["hf"] = data.hf[idx]
    batch.update({sequence_key(q): t[idx] for q, t in data.sequences.items()})
    batch.update(corrupt(data.brain[idx], idx, epoch))
    if settings.rot90_p > 0:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 11, int(step)]))
        dims = [1 + int(a) for a in settings.rot90_axes]  # axes of one sample (1, *spatial)
        rotate = rng.random(len(idx)) < settings.rot90_p
        turns = rng.integers(1, 4, len(idx))  # k quarter turns, k in {1, 2, 3} (MONAI RandRotate90, max_k 3)
        if rotate.any():
            batch = {k: t.clone() for k, t in batch.items()}
            for b in np.flatnonzero(rotate):
                for t in batch.values():
                    t[b] = torch.rot90(t[b], int(turns[b]), dims)
    return batch
