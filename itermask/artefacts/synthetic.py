"""Rule artefacts -> `make_artefacts`: the synthetic artefact set of one healthy test subject.

Every condition (artefact type or severity level ``<type>-s<k>``) is drawn from
`itermask.artefacts.algorithms.apply_artefact` with its type's seed
(``derive_seed(seed, subject, type)``: a type and its severity levels share their random draws,
so a sweep varies only its parameter) and written with its HF image and a sidecar JSON.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from itermask.artefacts.algorithms import apply_artefact, base_type, derive_seed
from itermask.core.highfreq import high_frequency
from itermask.errors import InputError
from itermask.io.atomic import write_json
from itermask.io.nifti import check_same_grid, load_nifti, save_nifti


def _load_inputs(image_path: str, brainmask_path: str, other_image_path: str | None, *, needs_other: bool,
                 dataset: str, subject: str) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray | None]:
    """(image NIfTI, volume, brain, other sequence's volume or None), grids checked."""
    ctx = dict(dataset=dataset, subject=subject)
    img = load_nifti(image_path, **ctx)
    brain_img = load_nifti(brainmask_path, **ctx)
    check_same_grid(brain_img, img, path=brainmask_path, **ctx)
    other = None
    if needs_other:
        if other_image_path is None:
            raise InputError("artefact 'other_sequence' needs other_image_path", path=image_path, **ctx)
        other_img = load_nifti(other_image_path, **ctx)
        check_same_grid(other_img, img, path=other_image_path, **ctx)
        other = np.asarray(other_img.dataobj, dtype=np.float32)
    return img, np.asarray(img.dataobj, dtype=np.float32), np.asarray(brain_img.dataobj) > 0, other


def make_artefact(
    image_path: str,
    brainmask_path: str,
    out_image: str,
    out_hf: str,
    out_json: str,
    *,
    artefact: str,
    params: dict[str, Any],
    seed: int,
    hf_radius: int,
    other_image_path: str | None,
    dataset: str,
    subject: str,
) -> None:
    """Corrupt a preprocessed healthy volume with one artefact, write it, its HF image at
    ``hf_radius`` and a sidecar JSON (type, params over the reference ones, sampled parameters,
    seeds, TorchIO version). The draw seed is ``derive_seed(seed, subject, type)``: every severity
    level ``<type>-s<k>`` of a subject shares its type's random draws, so a sweep varies only its
    parameter (METHOD.md §2)."""
    import torchio as tio

    ctx = dict(dataset=dataset, subject=subject)
    img, x, brain, other = _load_inputs(image_path, brainmask_path, other_image_path,
                                        needs_other=base_type(artefact) == "other_sequence", **ctx)
    derived = derive_seed(seed, subject, base_type(artefact))
    try:
        out, record = apply_artefact(artefact, x, brain, params, np.random.default_rng(derived), other=other,
                                     affine=img.affine)
    except ValueError as exc:
        raise InputError(f"cannot apply artefact '{artefact}': {exc}", path=image_path, **ctx) from exc
    hf = high_frequency(out, radius=int(hf_radius))
    record.update(
        dataset=dataset, subject=subject, seed=int(seed), derived_seed=derived,
        seed_rule="sha256('{seed}/{subject}/{artefact type}')[:8] little-endian",
        hf_radius=int(hf_radius), renormalise=None, torchio_version=tio.__version__,
        inputs={"image": str(image_path), "brainmask": str(brainmask_path),
                "other_image": None if other_image_path is None else str(other_image_path)},
    )
    save_nifti(out.astype(np.float32), img.affine, out_image)
    save_nifti(hf.astype(np.float32), img.affine, out_hf)
    write_json(out_json, record)


def make_artefacts(
    image_path: str,
    brainmask_path: str,
    specs: Mapping[str, tuple[str, dict[str, Any]]],
    out_images: Sequence[str | Path],
    out_hfs: Sequence[str | Path],
    out_jsons: Sequence[str | Path],
    *,
    seed: int,
    hf_radius: int,
    other_image_path: str | None,
    dataset: str,
    subject: str,
    log: Any = None,
) -> None:
    """Stage: every artefact condition of ``specs`` ({name: (type, params)}), in order, to the
    matching output paths (one of each per condition)."""
    if not len(specs) == len(out_images) == len(out_hfs) == len(out_jsons):
        raise ValueError("one image, HF and JSON output per artefact condition")
    for (name, (kind, params)), image, hf, js in zip(specs.items(), out_images, out_hfs, out_jsons):
        if f"/{name}/" not in str(image):
            raise ValueError(f"output {image} is not the folder of artefact '{name}'")
        if log is not None:
            log("artefact %s (%s) %s", name, kind, params)
        make_artefact(image_path, brainmask_path, str(image), str(hf), str(js), artefact=name, params=params,
                      seed=seed, hf_radius=hf_radius, other_image_path=other_image_path, dataset=dataset,
                      subject=subject)
