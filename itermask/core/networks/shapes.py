"""Input-size check shared by the 2D and 3D UNets."""
from __future__ import annotations

from typing import Sequence


def check_divisible(spatial: Sequence[int], factor: int) -> None:
    """Raise ValueError unless every spatial size is a positive multiple of `factor`."""
    if any(int(s) % factor or int(s) == 0 for s in spatial):
        raise ValueError(f"input size {tuple(int(s) for s in spatial)} must be divisible by {factor}")
