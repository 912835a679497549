"""The warning about declared raw files that are missing (said before planning)."""
from __future__ import annotations

from pathlib import Path

from itermask.config.raw_files import missing_raw_files, missing_raw_files_message
from itermask.config.study import Study, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_missing_images_labels_and_mask_files_are_named(tmp_path):
    """Images, labels and pattern masks that do not exist are listed per subject; the generated
    demo dataset (written by rule demo_data) is not."""
    cfg = load_config(ROOT / "config.yaml")
    for f in ("sub-a1_FLAIR.nii.gz", "sub-a1_mask.nii.gz", "sub-b2_FLAIR.nii.gz", "sub-b2_label.nii.gz"):
        (tmp_path / f).write_bytes(b"")
    cfg["datasets"]["ext"] = {
        "pattern": str(tmp_path / "sub-{subject}_{sequence}.nii.gz"),
        "label_pattern": str(tmp_path / "sub-{subject}_label.nii.gz"),
        "sequences": ["FLAIR"],
        "brain_mask": {"method": "pattern", "pattern": str(tmp_path / "sub-{subject}_mask.nii.gz")},
        "splits": {"test_healthy": ["a1"], "test_lesion": ["b2", "c3"]},
    }
    study = Study(cfg, base_dir=ROOT)
    assert missing_raw_files(study) == [
        ("ext", "b2", str(tmp_path / "sub-b2_mask.nii.gz")),
        ("ext", "c3", str(tmp_path / "sub-c3_FLAIR.nii.gz")),
        ("ext", "c3", str(tmp_path / "sub-c3_label.nii.gz")),
        ("ext", "c3", str(tmp_path / "sub-c3_mask.nii.gz")),
    ]
    message = missing_raw_files_message(study, shown=2)
    assert message.startswith("warning: 4 declared raw file(s) do not exist")
    assert f"  dataset 'ext', subject 'b2': {tmp_path / 'sub-b2_mask.nii.gz'}" in message
    assert message.endswith("  ... and 2 more")
    assert "fails the preprocessing job of its subject and the others in that job" in message  # the demo's 7 per job
    cfg["resources"]["preprocess_subjects_per_job"] = 1
    assert "each fails its subject's preprocessing job" in missing_raw_files_message(Study(cfg, base_dir=ROOT))
    del cfg["datasets"]["ext"]
    assert missing_raw_files_message(Study(load_config(ROOT / "config.yaml"), base_dir=ROOT)) is None
