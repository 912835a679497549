"""Tests of the embedded demo dataset generator (itermask.demo.demo_data)."""
from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from itermask.demo import demo_data as demo
from itermask.config.datasets import resolve_dataset
from itermask.demo.anatomy import load_anatomy
from itermask.demo.files import demo_files, demo_outputs
from itermask.demo.subject import synthesize_subject
from itermask.errors import ConfigError

PATTERN = "{root}/sub-{{subject}}/anat/sub-{{subject}}_{{sequence}}.nii.gz"
LABEL = "{root}/sub-{{subject}}/anat/sub-{{subject}}_label-lesion_mask.nii.gz"
SEQS = ["T1w", "FLAIR"]
DEMO4_SPLITS = {"train": ["h1"], "val_lesion": ["v1"], "test_lesion": ["l1", "l2"]}


def _patterns(root: Path) -> tuple[str, str]:
    return PATTERN.format(root=root), LABEL.format(root=root)


def _generate(pattern: str, label: str, splits: dict, sequences: list[str], *, voxel_size_mm: float,
              lesion_volumes_ml=(8.0, 25.0), seed: int = 0, workers: int = 1) -> list[Path]:
    """generate_demo with every subject's files named by the patterns (labels: the lesion splits)."""
    images = {s: {q: pattern.format(subject=s, sequence=q) for q in sequences} for ids in splits.values() for s in ids}
    labels = {s: label.format(subject=s) for split in ("val_lesion", "test_lesion") for s in splits.get(split, [])}
    return demo.generate_demo(splits, images, labels, str(demo.dataset_root(pattern) / "participants.tsv"),
                              voxel_size_mm=voxel_size_mm, lesion_volumes_ml=lesion_volumes_ml, seed=seed,
                              workers=workers)


def _load(path: Path) -> nib.Nifti1Image:
    return nib.load(str(path))


@pytest.fixture(scope="module", autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def demo4(tmp_path_factory):
    """A 4 mm demo: one healthy training subject, one labelled validation and two test lesion
    subjects, generated serially (workers=1)."""
    root = tmp_path_factory.mktemp("demo4") / "data" / "demo"
    pattern, label = _patterns(root)
    written = _generate(pattern, label, DEMO4_SPLITS, SEQS, voxel_size_mm=4.0, lesion_volumes_ml=[8.0, 25.0], seed=0,
                        workers=1)
    return root, pattern, label, written


def test_files_names_and_participants(demo4):
    root, pattern, label, written = demo4
    expected = {Path(pattern.format(subject=s, sequence=q)) for s in ("h1", "v1", "l1", "l2") for q in SEQS}
    expected |= {Path(label.format(subject=s)) for s in ("v1", "l1", "l2")}
    expected.add(root / "participants.tsv")
    assert set(written) == expected
    assert all(p.is_file() for p in expected)
    assert not Path(label.format(subject="h1")).exists()  # healthy: no label file
    assert not list(root.rglob(".*tmp*"))  # no leftovers of atomic writes
    rows = [r.split("\t") for r in (root / "participants.tsv").read_text().splitlines()]
    assert rows[0][:2] == ["subject", "split"]
    table = {r[0]: r for r in rows[1:]}
    assert table["h1"][1] == "train" and table["l2"][1] == "test_lesion" and table["v1"][1] == "val_lesion"
    assert float(table["h1"][3]) == 0.0
    # sizes cycle per lesion split: v1 and l1 get the first volume, l2 the second
    assert [table[s][2] for s in ("v1", "l1", "l2")] == ["8", "8", "25"] and float(table["v1"][3]) > 0
    # the recorded volume is the label's volume
    lab = _load(Path(label.format(subject="l2")))
    ml = np.count_nonzero(np.asarray(lab.dataobj)) * np.prod(lab.header.get_zooms()) / 1000
    assert float(table["l2"][3]) == pytest.approx(ml, abs=1e-3)


def test_native_orientation_grid_and_units(demo4):
    _, pattern, label, _ = demo4
    for subject in ("h1", "l1"):
        imgs = [_load(Path(pattern.format(subject=subject, sequence=q))) for q in SEQS]
        ref = imgs[0]
        assert nib.aff2axcodes(ref.affine) != ("R", "A", "S")
        assert np.allclose(ref.header.get_zooms(), 4.0)
        for img in imgs:
            assert img.shape == ref.shape and np.allclose(img.affine, ref.affine)
            assert img.get_data_dtype() == np.int16
            data = np.asarray(img.dataobj)
            assert data.min() >= 0 and data.max() > 300  # scanner-like units, not normalised
        canon = nib.as_closest_canonical(ref)
        assert nib.aff2axcodes(canon.affine) == ("R", "A", "S")
        assert sorted(canon.shape) == sorted(ref.shape)
        # the world origin lies inside the head, not at a corner of the grid
        centre_vox = np.linalg.inv(ref.affine) @ np.array([0, 0, 0, 1.0])
        assert np.all(centre_vox[:3] > 0.2 * np.array(ref.shape))
        assert np.all(centre_vox[:3] < 0.8 * np.array(ref.shape))
        # oblique: the affine is not a pure axis permutation
        rot = ref.affine[:3, :3] / 4.0
        assert np.abs(rot).max() < 0.9999
    lab = _load(Path(label.format(subject="l1")))
    assert lab.get_data_dtype() == np.uint8 and lab.shape == ref.shape


def test_workers_write_the_same_files_as_a_serial_run(demo4, tmp_path):
    """workers=2 (threads) writes the same arrays, affines, labels and participants.tsv as workers=1."""
    root, pattern, label, written = demo4
    root2 = tmp_path / "data" / "demo"
    pattern2, label2 = _patterns(root2)
    written2 = _generate(pattern2, label2, DEMO4_SPLITS, SEQS, voxel_size_mm=4.0, lesion_volumes_ml=[8.0, 25.0],
                         seed=0, workers=2)
    assert [p.relative_to(root2) for p in written2] == [p.relative_to(root) for p in written]  # same order
    assert (root2 / "participants.tsv").read_text() == (root / "participants.tsv").read_text()
    for path, path2 in zip(written, written2):
        if path.name.endswith(".nii.gz"):
            a, b = _load(path), _load(path2)
            assert a.get_data_dtype() == b.get_data_dtype() and np.array_equal(a.affine, b.affine)
            assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj)), path.name


def test_an_error_of_a_worker_propagates(tmp_path, monkeypatch):
    """A subject that fails in a worker thread fails the stage with its own error."""
    synthesize = demo.synthesize_subject

    def failing(anatomy, subject, *args, **kwargs):
        if subject == "b2":
            raise RuntimeError("synthesis of b2 failed")
        return synthesize(anatomy, subject, *args, **kwargs)

    monkeypatch.setattr(demo, "synthesize_subject", failing)
    pattern, label = _patterns(tmp_path)
    with pytest.raises(RuntimeError, match="b2 failed"):
        _generate(pattern, label, {"train": ["b1", "b2", "b3"]}, ["T1w"], voxel_size_mm=6.0, workers=2)
    assert not (tmp_path / "participants.tsv").exists()
    with pytest.raises(ValueError, match="workers"):
        _generate(pattern, label, {"train": ["b1"]}, ["T1w"], voxel_size_mm=6.0, workers=0)


def test_head_looks_like_an_unstripped_scan():
    """Skull/scalp around the brain, dark background, T1 WM > GM > CSF."""
    anatomy = load_anatomy(4.0)
    sub = synthesize_subject(anatomy, "h1", ["T1w", "FLAIR", "T2w"], voxel_size_mm=4.0, seed=0)
    t1 = sub.images["T1w"].astype(float)
    brain = sub.brain_mask
    corner = t1[:4, :4, :4]
    assert np.median(corner) < 0.08 * np.median(t1[brain])
    # head tissue outside the brain: a substantial part of the non-brain foreground
    head = t1 > 0.2 * np.median(t1[brain])
    assert (head & ~brain).sum() > 0.5 * brain.sum()
    tis = {k: v > 0.9 for k, v in sub.tissue.items()}
    mean = {q: {k: sub.images[q][m].mean() for k, m in tis.items()} for q in sub.images}
    assert mean["T1w"]["wm"] > mean["T1w"]["gm"] > mean["T1w"]["csf"]
    assert mean["FLAIR"]["gm"] > mean["FLAIR"]["wm"] > mean["FLAIR"]["csf"]
    assert mean["T2w"]["csf"] > mean["T2w"]["gm"] > mean["T2w"]["wm"]
    # brain size of an adult: about 1.1-1.9 litres
    assert 1100 < brain.sum() * 64 / 1000 < 1900


def test_reproducible_and_independent_of_other_subjects(demo4, tmp_path):
    _, pattern, label, _ = demo4
    pattern2, label2 = _patterns(tmp_path / "other")
    splits = {"val": ["x9"], "test_lesion": ["l1"], "test_healthy": ["q3"]}
    _generate(pattern2, label2, splits, ["FLAIR", "T1w"], voxel_size_mm=4.0, lesion_volumes_ml=[8.0, 25.0], seed=0)
    for q in SEQS:
        a = np.asarray(_load(Path(pattern.format(subject="l1", sequence=q))).dataobj)
        b = np.asarray(_load(Path(pattern2.format(subject="l1", sequence=q))).dataobj)
        assert np.array_equal(a, b)
    la = np.asarray(_load(Path(label.format(subject="l1"))).dataobj)
    lb = np.asarray(_load(Path(label2.format(subject="l1"))).dataobj)
    assert np.array_equal(la, lb)


def test_subjects_and_seeds_differ(demo4):
    _, pattern, _, _ = demo4
    anatomy = load_anatomy(4.0)
    a = np.asarray(_load(Path(pattern.format(subject="h1", sequence="T1w"))).dataobj).astype(float)
    b = np.asarray(_load(Path(pattern.format(subject="l1", sequence="T1w"))).dataobj).astype(float)
    assert np.abs(a - b).mean() > 0.05 * a.mean()
    s0 = synthesize_subject(anatomy, "h1", ["T1w"], voxel_size_mm=4.0, seed=0)
    s1 = synthesize_subject(anatomy, "h1", ["T1w"], voxel_size_mm=4.0, seed=1)
    assert np.array_equal(s0.images["T1w"], a.astype(np.int16))  # the stage writes what it synthesises
    assert not np.allclose(s0.affine, s1.affine)
    assert np.abs(s0.images["T1w"].astype(float) - s1.images["T1w"]).mean() > 0.05 * a.mean()


def test_sequences_share_geometry_but_not_noise():
    anatomy = load_anatomy(4.0)
    one = synthesize_subject(anatomy, "s7", ["T1w"], voxel_size_mm=4.0, seed=0)
    two = synthesize_subject(anatomy, "s7", ["FLAIR", "T1w"], voxel_size_mm=4.0, seed=0)
    assert np.array_equal(one.images["T1w"], two.images["T1w"])  # per-sequence streams
    assert np.array_equal(one.brain_mask, two.brain_mask)
    # the noise of the two sequences is independent: residuals of a smooth fit do not correlate
    from scipy.ndimage import uniform_filter

    r1 = two.images["T1w"] - uniform_filter(two.images["T1w"].astype(float), 3)
    r2 = two.images["FLAIR"] - uniform_filter(two.images["FLAIR"].astype(float), 3)
    inside = two.brain_mask
    assert abs(np.corrcoef(r1[inside], r2[inside])[0, 1]) < 0.5


@pytest.mark.parametrize("ml", [0.5, 2.0, 8.0, 25.0])
def test_lesion_size_location_and_contrast(ml):
    anatomy = load_anatomy(3.0)
    sub = synthesize_subject(anatomy, f"les{ml}", ["T1w", "FLAIR", "T2w"], voxel_size_mm=3.0,
                             lesion_ml=ml, seed=3)
    lab = sub.label.astype(bool)
    n = lab.sum()
    assert n > 0
    assert not (lab & ~sub.brain_mask).any()  # inside the brain
    volume = n * 27 / 1000
    assert abs(volume - ml) <= 0.3 * ml
    assert volume == pytest.approx(sub.lesion_volume_ml)
    if ml == 0.5:
        assert n < 200
    if ml == 25.0:
        assert n > 800
    # mostly white matter
    assert sub.tissue["wm"][lab].mean() > 0.5
    wm = (sub.tissue["wm"] > 0.9) & ~lab
    for q, sign in (("FLAIR", 1), ("T2w", 1), ("T1w", -1)):
        img = sub.images[q].astype(float)
        assert sign * (img[lab].mean() - img[wm].mean()) > 0
    # a smooth boundary: the ring just outside the lesion is between lesion and WM on FLAIR
    from scipy.ndimage import binary_dilation

    ring = binary_dilation(lab) & ~lab & (sub.tissue["wm"] > 0.5)
    assert ring.any()
    f = sub.images["FLAIR"].astype(float)
    assert f[wm].mean() < f[ring].mean() < f[lab].mean()


def test_bad_arguments(tmp_path):
    pattern, label = _patterns(tmp_path)
    with pytest.raises(ValueError, match="PD"):
        _generate(pattern, label, {"train": ["a"]}, ["T1w", "PD"], voxel_size_mm=4.0)
    with pytest.raises(ConfigError, match="'a'"):
        _generate(pattern, label, {"train": ["a"], "val": ["a"]}, ["T1w"], voxel_size_mm=4.0)
    image = {"a": {"T1w": pattern.format(subject="a", sequence="T1w")}}
    kw = dict(voxel_size_mm=4.0, lesion_volumes_ml=[8.0], seed=0)
    with pytest.raises(ConfigError, match="splits hold"):
        demo.generate_demo({"train": ["a", "b"]}, image, {}, str(tmp_path / "p.tsv"), **kw)
    with pytest.raises(ConfigError, match="no label path"):
        demo.generate_demo({"test_lesion": ["a"]}, image, {}, str(tmp_path / "p.tsv"), **kw)
    with pytest.raises(ConfigError, match="positive"):
        demo.generate_demo({"train": ["a"]}, image, {}, str(tmp_path / "p.tsv"), **{**kw, "lesion_volumes_ml": []})
    assert not any(tmp_path.iterdir())
    assert demo.dataset_root("data/demo/sub-{subject}/anat/x.nii.gz") == Path("data/demo")


def test_files_of_a_dataset_follow_its_sequence_names_split_files_and_labels(tmp_path):
    """The rule's outputs and params: a split file read as subject IDs, file names from
    sequence_names, labels of every labelled split, participants.tsv in the dataset's root."""
    (tmp_path / "val.txt").write_text("v1\nv2\n")
    entry = {"pattern": "data/x/sub-{subject}/anat/sub-{subject}_{sequence}.nii.gz",
             "label_pattern": "data/x/sub-{subject}/anat/sub-{subject}_lesion.nii.gz",
             "sequences": ["T1w", "FLAIR"], "sequence_names": {"FLAIR": "flair"}, "brain_mask": {"method": "deepbet"},
             "splits": {"train": ["h1"], "val": "val.txt", "test_lesion": ["l1"]},
             "labelled_splits": ["train", "test_lesion"]}
    files = demo_files(resolve_dataset("x", entry, base_dir=tmp_path, generated=True))
    assert files["splits"] == {"train": ["h1"], "val": ["v1", "v2"], "test_lesion": ["l1"]}
    assert files["images"]["v2"] == {"T1w": "data/x/sub-v2/anat/sub-v2_T1w.nii.gz",
                                     "FLAIR": "data/x/sub-v2/anat/sub-v2_flair.nii.gz"}
    assert files["labels"] == {s: f"data/x/sub-{s}/anat/sub-{s}_lesion.nii.gz" for s in ("h1", "l1")}
    assert files["participants_tsv"] == "data/x/participants.tsv"
    assert len(demo_outputs(files)) == 4 * 2 + 2


def test_writes_the_files_it_is_given(tmp_path):
    """Any output names; a labelled healthy subject gets an all-zero label."""
    images = {"h1": {"T1w": str(tmp_path / "a" / "h1_t1.nii.gz")}, "l1": {"T1w": str(tmp_path / "b" / "l1.nii.gz")}}
    labels = {"h1": str(tmp_path / "h1_label.nii.gz"), "l1": str(tmp_path / "l1_label.nii.gz")}
    written = demo.generate_demo({"train": ["h1"], "test_lesion": ["l1"]}, images, labels, str(tmp_path / "p.tsv"),
                                 voxel_size_mm=6.0, lesion_volumes_ml=[25.0], seed=0)
    assert sorted(map(str, written)) == sorted([*(p for d in images.values() for p in d.values()),
                                                *labels.values(), str(tmp_path / "p.tsv")])
    assert not np.asarray(_load(Path(labels["h1"])).dataobj).any()
    assert np.asarray(_load(Path(labels["l1"])).dataobj).any()


def test_deepbet_finds_the_generated_brain(tmp_path):
    """The real skull-stripper recovers the generator's brain mask on a 2 mm head."""
    from deepbet import run_bet

    pattern, label = _patterns(tmp_path)
    _generate(pattern, label, {"train": ["b1"]}, ["T1w"], voxel_size_mm=2.0)
    src = Path(pattern.format(subject="b1", sequence="T1w"))
    out = tmp_path / "mask.nii.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_bet([str(src)], mask_paths=[str(out)], no_gpu=True)
    img = _load(out)
    assert img.shape == _load(src).shape and np.allclose(img.affine, _load(src).affine, atol=1e-4)
    got = np.asarray(img.dataobj) > 0
    ref = synthesize_subject(load_anatomy(2.0), "b1", ["T1w"], voxel_size_mm=2.0, seed=0).brain_mask
    dice = 2 * (got & ref).sum() / (got.sum() + ref.sum())
    assert dice >= 0.85, dice
