"""Seed recipes: every random draw of the pipeline derives from the config ``seed`` and keys
that name what is drawn (never from output paths, file names or Python's hash salt).

- ``derive_seed(seed, *ints)``: integer keys (training: step, stream number).
- ``keyed_seed(seed, *keys)``: text keys (inference: dataset, subject, condition, slice).

The older, value-preserving recipes of the demo generator (``itermask.demo``), the
training masks (``itermask.core.masks.mask_rng``) and the artefacts
(``itermask.artefacts``) stay where they are used; they too take only the seed and keys.
"""
from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed that is a pure function of (seed, *keys)."""
    state = np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def keyed_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed that is a pure function of (seed, str(key) for each key)."""
    digest = hashlib.sha256("\x1f".join(str(k) for k in keys).encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4)]
    # a seed >= 2**32 enters as several 32-bit words (SeedSequence splits it): values below stay as they were
    state = np.random.SeedSequence([int(seed), *words]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])
