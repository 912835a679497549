"""Synthetic artefact algorithms for the detection experiments (METHOD.md §2, IterMask3D Table 1 / Fig. 5).

Every function takes a preprocessed 3D volume (float32, RAS canonical: the last axis is the
axial/superior axis, superior = increasing last index) and returns a new float32 volume;
nothing is modified in place. All parameters are explicit; randomness comes from a given
``np.random.Generator`` (NumPy draws) or from a torch seed drawn from it (TorchIO draws).

Choices where the reference description leaves room (documented, tested):

- ``chunk_top``: "a slab starting at the first brain-containing index along the superior
  axis" is read as *the top of the brain going downward*: the slab covers the ``size`` axial
  indices ending at the most superior index that contains brain (clipped at 0).
- ``chunk_middle``: axial indices ``start`` .. ``start + size - 1``.
  Both chunks set the whole slab (all of x and y) to the volume minimum.
- ``kspace_noise``: per axial slice, F = fftshift(FFT2(slice)); "rows" are the first in-plane
  axis (x); the kept central rows are ``N//2 - k//2 .. N//2 - k//2 + k - 1`` (k = 2, N even:
  rows N/2 - 1 and N/2, the DC row included). Elsewhere uniform noise
  U(-A_re, A_re) + i·U(-A_im, A_im) is added, A_re = amplitude · max|Re F|,
  A_im = amplitude · max|Im F| of that slice. The result is the real part of the inverse FFT.
- ``zipper``: a stripe ``width`` voxels wide starts at each listed column (second in-plane
  axis, y) in every axial slice; its voxels get independent U(min, max) values of that slice.
- ``spike``/``ghosting``/``bias_field``/``motion`` call TorchIO 1.x. Spike and Ghosting are
  deterministic; RandomBiasField/RandomMotion are sampled under ``torch.manual_seed(torch_seed)``
  (the global torch RNG state is restored afterwards) and the sampled parameters are read
  back from TorchIO's transform history into the record.

Values outside the input range (TorchIO's Fourier-domain transforms return negative values and
structured signal in the background, METHOD/FACTS): they *are* the artefact and are kept as
they are; nothing is clipped and the background is not reset. The brain mask is never
changed. The record lists the input and output ranges and the fraction of voxels outside the
input range so this is visible. The result is checked to be finite.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np

#: Reference parameters *(ref)* of each type, used for keys the config leaves out. They stay
#: beside the algorithms (not in the schema) because their keys are each algorithm's arguments.
REFERENCE_PARAMS: dict[str, dict[str, Any]] = {
    "chunk_top": {"size": 30},
    "chunk_middle": {"size": 30, "start": 80},
    "kspace_noise": {"amplitude": 0.003, "keep_center_rows": 2},
    "spike": {"positions": [[0.45, 0.45, 0.45]], "intensity": 4.0},
    "bias_field": {"coefficients": 0.1, "order": 3},
    "ghosting": {"num_ghosts": 4, "axis": 1, "intensity": 2.0, "restore": 0.01},
    "zipper": {"columns": [60, 90, 120], "width": 5},
    "motion": {"degrees": 10.0, "translation": 10.0, "num_transforms": 2},
    "other_sequence": {},
}

ARTEFACT_TYPES = tuple(REFERENCE_PARAMS)
#: what a table caption adds to a type's parameters (METHOD.md §2 asks Table 1 to say this)
PARAM_NOTES = {
    "kspace_noise": ("uniform noise of amplitude × the slice spectrum's largest |Re| and |Im| parts: the reference "
                     "code's parametrisation, not the paper's noise level 0.2, whose equations are lost"),
}


def describe_params(artefact_type: str, params: dict[str, Any] | None) -> str:
    """Caption text of an artefact's parameters (reference defaults merged with ``params``)."""
    merged = merged_params(artefact_type, params)
    text = ", ".join(f"{k} {v}" for k, v in merged.items())
    note = PARAM_NOTES.get(artefact_type)
    return "; ".join(t for t in (text, note) if t)


# ----------------------------------------------------------------------------- helpers
def check_volume(volume: np.ndarray) -> np.ndarray:
    x = np.asarray(volume, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"artefacts need a 3D volume, got shape {x.shape}")
    return x


def _superior_brain_index(brain: np.ndarray) -> int:
    axial = np.flatnonzero(np.asarray(brain, dtype=bool).any(axis=(0, 1)))
    if axial.size == 0:
        raise ValueError("the brain mask is empty")
    return int(axial[-1])


# ----------------------------------------------------------------------------- artefacts
def chunk_top(volume: np.ndarray, brain: np.ndarray, size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Set the ``size`` axial slices ending at the top of the brain to the volume minimum."""
    x = check_volume(volume).copy()
    top = _superior_brain_index(brain)
    lo = max(0, top - int(size) + 1)
    x[:, :, lo : top + 1] = x.min()
    return x, {"axial_range": [lo, top + 1]}


def chunk_middle(volume: np.ndarray, size: int, start: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Set axial slices ``start`` .. ``start + size - 1`` to the volume minimum."""
    x = check_volume(volume).copy()
    n = x.shape[2]
    if not 0 <= int(start) < n:
        raise ValueError(f"chunk_middle start {start} is outside the axial range 0..{n - 1}")
    hi = min(n, int(start) + int(size))
    x[:, :, int(start) : hi] = x.min()
    return x, {"axial_range": [int(start), hi]}


def central_rows(n: int, keep: int) -> slice:
    """Rows of a shifted spectrum of length ``n`` left untouched by k-space noise."""
    lo = n // 2 - int(keep) // 2
    return slice(lo, lo + int(keep))


def kspace_noise_spectra(
    volume: np.ndarray, amplitude: float, keep_center_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shifted 2D spectra of every axial slice before and after adding noise, shape (X, Y, Z)."""
    x = check_volume(volume).astype(np.float64)
    spec = np.fft.fftshift(np.fft.fft2(x, axes=(0, 1)), axes=(0, 1))
    a_re = float(amplitude) * np.abs(spec.real).max(axis=(0, 1))  # per slice, shape (Z,)
    a_im = float(amplitude) * np.abs(spec.imag).max(axis=(0, 1))
    noise = rng.uniform(-1.0, 1.0, size=spec.shape) * a_re + 1j * rng.uniform(-1.0, 1.0, size=spec.shape) * a_im
    noise[central_rows(x.shape[0], keep_center_rows)] = 0
    return spec, spec + noise


def kspace_noise(
    volume: np.ndarray, amplitude: float, keep_center_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Complex uniform noise in each axial slice's spectrum except the central rows."""
    _, noisy = kspace_noise_spectra(volume, amplitude, keep_center_rows, rng)
    out = np.fft.ifft2(np.fft.ifftshift(noisy, axes=(0, 1)), axes=(0, 1)).real
    rows = central_rows(np.shape(volume)[0], keep_center_rows)
    return out.astype(np.float32), {"kept_rows": [rows.start, rows.stop]}


def zipper(
    volume: np.ndarray, columns: list[int], width: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Stripes ``width`` wide starting at ``columns`` (axis 1) in every axial slice, filled
    with uniform random values spanning that slice's intensity range."""
    x = check_volume(volume).copy()
    ny = x.shape[1]
    cols = np.concatenate([np.arange(int(c), int(c) + int(width)) for c in columns]) if len(columns) else np.array([], int)
    if cols.size and (cols.min() < 0 or cols.max() >= ny):
        raise ValueError(f"zipper columns {list(columns)} (width {width}) exceed the in-plane size {ny}")
    cols = np.unique(cols)
    lo = x.min(axis=(0, 1))  # per axial slice
    hi = x.max(axis=(0, 1))
    u = rng.uniform(0.0, 1.0, size=(x.shape[0], cols.size, x.shape[2]))
    x[:, cols, :] = (lo + u * (hi - lo)).astype(np.float32)
    return x, {"stripe_columns": cols.tolist()}


# ----------------------------------------------------------------------------- dispatcher
def base_type(name: str) -> str:
    """Artefact type of a name: ``ghosting`` -> ``ghosting``, ``ghosting-s1`` -> ``ghosting``."""
    head, sep, tail = name.rpartition("-s")
    return head if sep and tail.isdigit() else name


def merged_params(artefact_type: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Reference defaults of a type overridden by ``params`` (unknown keys are an error)."""
    if artefact_type not in REFERENCE_PARAMS:
        raise ValueError(f"unknown artefact type '{artefact_type}', expected one of {list(ARTEFACT_TYPES)}")
    merged = copy.deepcopy(REFERENCE_PARAMS[artefact_type])
    for key, value in (params or {}).items():
        if key not in merged:
            raise ValueError(f"artefact '{artefact_type}' has no parameter '{key}' (known: {sorted(merged)})")
        merged[key] = value
    return merged


def apply_artefact(
    name: str,
    volume: np.ndarray,
    brain: np.ndarray,
    params: dict[str, Any] | None,
    rng: np.random.Generator,
    other: np.ndarray | None = None,
    affine: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Corrupt ``volume`` with artefact ``name`` (a type or ``<type>-s<k>``).

    ``params`` override the type's defaults (e.g. ``{"intensity": 1.0}`` for a severity level).
    ``other`` is the other sequence's preprocessed volume (``other_sequence`` only). TorchIO
    draws use ``torch_seed = rng.integers(2**31)``, recorded. Returns the float32 volume and a
    record: type, merged params, sampled parameters, torch seed, value ranges.
    """
    from itermask.artefacts.torchio_artefacts import bias_field, ghosting, motion, spike  # torch: slow import

    x = check_volume(volume)
    brain = np.asarray(brain, dtype=bool)
    if brain.shape != x.shape:
        raise ValueError(f"brain mask shape {brain.shape} differs from volume shape {x.shape}")
    kind = base_type(name)
    p = merged_params(kind, params)
    torch_seed = int(rng.integers(0, 2**31))
    runners: dict[str, Callable[[], tuple[np.ndarray, dict[str, Any]]]] = {
        "chunk_top": lambda: chunk_top(x, brain, p["size"]),
        "chunk_middle": lambda: chunk_middle(x, p["size"], p["start"]),
        "kspace_noise": lambda: kspace_noise(x, p["amplitude"], p["keep_center_rows"], rng),
        "spike": lambda: spike(x, p["positions"], p["intensity"], affine),
        "ghosting": lambda: ghosting(x, p["num_ghosts"], p["axis"], p["intensity"], p["restore"], affine),
        "bias_field": lambda: bias_field(x, p["coefficients"], p["order"], torch_seed, affine),
        "zipper": lambda: zipper(x, p["columns"], p["width"], rng),
        "motion": lambda: motion(x, p["degrees"], p["translation"], p["num_transforms"], torch_seed, affine),
        "other_sequence": lambda: _other_sequence(x, other),
    }
    out, sampled = runners[kind]()
    out = np.asarray(out, dtype=np.float32)
    if out.shape != x.shape or not np.all(np.isfinite(out)):
        raise ValueError(f"artefact '{name}' produced a non-finite or mis-shaped volume")
    lo, hi = float(x.min()), float(x.max())
    record = {
        "name": name,
        "type": kind,
        "params": p,
        "sampled": sampled,
        "torch_seed": torch_seed,
        "input_range": [lo, hi],
        "output_range": [float(out.min()), float(out.max())],
        "fraction_outside_input_range": float(np.mean((out < lo) | (out > hi))),
        "changed_fraction_in_brain": float(np.mean(out[brain] != x[brain])) if brain.any() else 0.0,
    }
    return out, record


def _other_sequence(x: np.ndarray, other: np.ndarray | None) -> tuple[np.ndarray, dict[str, Any]]:
    if other is None:
        raise ValueError("artefact 'other_sequence' needs the other sequence's volume")
    o = check_volume(other)
    if o.shape != x.shape:
        raise ValueError(f"other sequence shape {o.shape} differs from the volume's {x.shape}")
    return o.copy(), {}


def derive_seed(seed: int, subject: str, artefact: str) -> int:
    """Seed of one (subject, artefact) draw: SHA-256 of ``"{seed}/{subject}/{artefact}"``,
    first 8 bytes as an unsigned integer (stable across runs, platforms and Python versions)."""
    import hashlib

    digest = hashlib.sha256(f"{int(seed)}/{subject}/{artefact}".encode()).digest()
    return int.from_bytes(digest[:8], "little")
