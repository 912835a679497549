"""benchmarks/gamma_sweep.py on a tiny random model, two tiny lesioned subjects and one healthy
validation subject (and a labelled one): it prints one line per gamma with one Dice per subject,
and one line per honest protocol, gamma and fixed tau."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from itermask.core.networks import build_network
from itermask.core.networks.model_file import save_models
from itermask.io.nifti import save_nifti

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gamma_sweep  # noqa: E402


def _tiny_study(tmp_path: Path, variant: str = "full") -> None:
    """A tiny random model (trained as ``variant``) and four 32^3 subjects: lesioned a, b, v; healthy c."""
    network = {"channels": [2, 4, 4, 8, 8], "dropout": 0.0, "residual": "avgpool", "input_skip": False}
    channels = 1 if variant == "no_freq" else 2
    torch.manual_seed(0)
    model = build_network("itermask3d", channels, network)
    save_models(tmp_path / "model.pt", {"masked": model},
                {"method": "itermask3d", "network": network, "in_channels": {"masked": channels},
                 "variants": {"masked": variant}, "variant": variant, "hf_radius": 4})
    rng = np.random.default_rng(0)
    g = np.indices((32, 32, 32)) - 15.5
    brain = (g**2).sum(0) < 144
    for s in ("a", "b", "c", "v"):
        folder = tmp_path / f"sub-{s}"
        lesion = brain & (((g - 4) ** 2).sum(0) < 9) & (s != "c")
        x = (rng.normal(size=brain.shape) * brain + 4 * lesion).astype(np.float32)
        for name, arr in (("FLAIR", x), ("FLAIR_hf-r4", x - x.mean()), ("brainmask", brain), ("label", lesion)):
            save_nifti(arr.astype(np.float32), np.eye(4), folder / f"{name}.nii.gz")


def test_gamma_sweep_prints_a_dice_per_subject_and_gamma(tmp_path, capsys):
    _tiny_study(tmp_path)
    gamma_sweep.main(["--model", str(tmp_path / "model.pt"), "--preproc", str(tmp_path), "--subjects", "a", "b",
                      "--experiment", "im3d_flair_seg", "--gammas", "1", "100", "--val", "c", "--taus", "0.5",
                      "--val-lesion", "v", "--seed-offset", "7"])
    out = capsys.readouterr().out.splitlines()
    lines = [ln for ln in out if ln.startswith("gamma ")]
    honest = [ln for ln in out if ln.startswith("  honest (theta ")]
    labelled = [ln for ln in out if ln.startswith("  honest labelled_val (theta ")]
    assert len(honest) == 3 and len(labelled) == 3
    for ln in honest + labelled:
        dices = [float(d) for d in re.findall(r" [ab]:([0-9.]+)", ln)]
        assert len(dices) == 2 and all(0 <= d <= 1 for d in dices)
    assert [ln.split(":")[0] for ln in lines] == ["gamma 1", "gamma 100"]
    fixed = [ln for ln in out if ln.startswith("fixed tau 0.5: mean Dice ")]
    assert len(fixed) == 1 and len(re.findall(r"\(tau 0\.5\)", fixed[0])) == 2
    for ln in lines:
        dices = [float(d) for d in re.findall(r" [ab]:([0-9.]+)\(tau", ln)]
        assert len(dices) == 2 and all(0 <= d <= 1 for d in dices)


def test_gamma_sweep_fine_tail_replaces_the_phase_a_schedule(tmp_path, capsys):
    _tiny_study(tmp_path)
    common = ["--model", str(tmp_path / "model.pt"), "--preproc", str(tmp_path), "--subjects", "a",
              "--experiment", "im3d_flair_seg", "--gammas", "1", "--val-lesion", "v"]
    gamma_sweep.main(common + ["--fine-from", "95", "--fine-step", "0.5"])
    header = capsys.readouterr().out.splitlines()[0]
    # 5 % steps to 95 (19), then 0.5 % steps to 100 (10); lesion voxels of a, then of v
    assert "phase A 29 iterations (5 .. 100 %)" in header
    assert re.search(r"lesion voxels a:\d+; labelled validation v:\d+$", header)
    gamma_sweep.main(common)  # the experiment's own schedule: 5 % to 90, 1 % to 100
    assert "phase A 28 iterations" in capsys.readouterr().out.splitlines()[0]


def test_dice_helper_known_value():
    """dice() on hand-built masks: |P| = 3, |L| = 2, overlap 1 -> 2 * 1 / (3 + 2) = 0.4."""
    pred = np.zeros((2, 3, 4), dtype=bool)
    pred[0, 0, :3] = True
    label = torch.zeros((2, 3, 4))
    label[0, 0, 2:4] = 1
    assert gamma_sweep.dice(pred, label) == pytest.approx(0.4)
    assert gamma_sweep.dice(torch.zeros((2, 3, 4)), label) == pytest.approx(0.0)
    assert gamma_sweep.dice(label > 0, label) == pytest.approx(1.0)


def test_gamma_sweep_prints_the_known_dice_of_a_whole_brain_mask(tmp_path, capsys):
    """Fixed tau -1 (below every squared error): phase B keeps the whole brain, Dice = 2|L| / (|B| + |L|)."""
    _tiny_study(tmp_path)
    gamma_sweep.main(["--model", str(tmp_path / "model.pt"), "--preproc", str(tmp_path), "--subjects", "a",
                      "--experiment", "im3d_flair_seg", "--gammas", "1", "--taus", "-1"])
    g = np.indices((32, 32, 32)) - 15.5
    brain = (g**2).sum(0) < 144
    lesion = brain & (((g - 4) ** 2).sum(0) < 9)
    expected = 2 * lesion.sum() / (brain.sum() + lesion.sum())  # the lesion lies inside the brain
    assert 0.02 < expected < 0.2
    fixed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("fixed tau -1: ")]
    assert fixed == [f"fixed tau -1: mean Dice {expected:.3f} | a:{expected:.2f}(tau -1)"]


def test_gamma_sweep_prints_tau_to_three_significant_digits(tmp_path, capsys):
    """A fixed tau of 0.077 is printed as 0.077, not rounded to 0.1."""
    _tiny_study(tmp_path)
    gamma_sweep.main(["--model", str(tmp_path / "model.pt"), "--preproc", str(tmp_path), "--subjects", "a",
                      "--experiment", "im3d_flair_seg", "--gammas", "1", "--taus", "0.077"])
    fixed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("fixed tau 0.077: ")]
    assert len(fixed) == 1 and fixed[0].endswith("(tau 0.077)")


def test_gamma_sweep_passes_the_no_freq_variant_to_the_network(tmp_path, capsys):
    """A one-channel no_freq model with im3d_flair_nofreq (once a channel mismatch): fixed tau -1
    keeps the whole brain, Dice = 2|L| / (|B| + |L|); no HF file is read."""
    _tiny_study(tmp_path, "no_freq")
    (tmp_path / "sub-a" / "FLAIR_hf-r4.nii.gz").unlink()
    gamma_sweep.main(["--model", str(tmp_path / "model.pt"), "--preproc", str(tmp_path), "--subjects", "a",
                      "--experiment", "im3d_flair_nofreq", "--gammas", "1", "--taus", "-1"])
    g = np.indices((32, 32, 32)) - 15.5
    brain = (g**2).sum(0) < 144
    lesion = brain & (((g - 4) ** 2).sum(0) < 9)
    expected = 2 * lesion.sum() / (brain.sum() + lesion.sum())
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("im3d_flair_nofreq: no HF input, phase A ")
    assert [ln for ln in out if ln.startswith("fixed tau -1: ")] == [
        f"fixed tau -1: mean Dice {expected:.3f} | a:{expected:.2f}(tau -1)"]


@pytest.mark.parametrize("experiment, variant, message", [
    ("im3d_flair_nospatial", "full", "single-step variant 'no_spatial'"),
    ("im2_flair", "full", "uses method 'itermask2', not itermask3d"),
    ("im3d_flair_nofreq", "full", "needs a no_freq model"),
    ("im3d_flair_seg", "no_freq", "needs a full model"),
])
def test_gamma_sweep_refuses_experiments_it_cannot_sweep(tmp_path, capsys, experiment, variant, message):
    """A single-step variant, another method or a model of the other input variant: one-line error, exit 1."""
    _tiny_study(tmp_path, variant)
    with pytest.raises(SystemExit) as exc:
        gamma_sweep.main(["--model", str(tmp_path / "model.pt"), "--preproc", str(tmp_path), "--subjects", "a",
                          "--experiment", experiment, "--gammas", "1"])
    text = str(exc.value.code)
    assert text.startswith("gamma_sweep: ") and message in text and "\n" not in text
    assert capsys.readouterr().out == ""


def test_gamma_sweep_refuses_a_model_of_another_method(tmp_path):
    _tiny_study(tmp_path)
    from itermask.core.networks.model_file import read_model_file

    meta, states = read_model_file(tmp_path / "model.pt")
    network = dict(meta["network"])
    torch.manual_seed(0)
    save_models(tmp_path / "other.pt", {"masked": build_network("itermask3d", 2, network)},
                {**meta, "method": "itermask2"})
    with pytest.raises(SystemExit) as exc:
        gamma_sweep.main(["--model", str(tmp_path / "other.pt"), "--preproc", str(tmp_path), "--subjects", "a",
                          "--experiment", "im3d_flair_seg", "--gammas", "1"])
    assert str(exc.value.code).startswith("gamma_sweep: ")


def test_gamma_sweep_phase_b_from_the_tau_mask_reruns_the_same_phase_a(tmp_path, capsys):
    """--phase-b-start tau_mask runs phase A again per gamma with the same noise seeds: each subject
    gets the tau of the whole-brain start's curve; --r2-min, --curve-scale-percent and --y-limit are
    accepted (smoke runs)."""
    _tiny_study(tmp_path)
    common = ["--model", str(tmp_path / "model.pt"), "--preproc", str(tmp_path), "--subjects", "a", "b",
              "--experiment", "im3d_flair_seg", "--gammas", "0.5", "3"]
    taus = {}
    for start in ("brain", "tau_mask"):
        gamma_sweep.main(common + ["--phase-b-start", start])
        out = capsys.readouterr().out.splitlines()
        assert out[1] == ("phase B starts from the tau mask (gamma rules)" if start == "tau_mask"
                          else "phase B starts from the whole brain")
        taus[start] = [re.findall(r"\(tau ([^)]+)\)", ln) for ln in out if ln.startswith("gamma ")]
        assert len(taus[start]) == 2 and all(len(t) == 2 for t in taus[start])
    assert taus["tau_mask"] == taus["brain"]
    for extra in (["--r2-min", "0"], ["--curve-scale-percent", "none", "--y-limit", "10"],
                  ["--curve-scale-percent", "50", "--y-limit", "50"]):
        gamma_sweep.main(common + extra)
        assert len([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("gamma ")]) == 2


def test_forward_amp_follows_the_config_precision_unless_replaced():
    """The sweep's forward passes are the pipeline's (config ``precision``) unless --precision says."""
    assert gamma_sweep.forward_amp({"precision": "auto"}, None) is True
    assert gamma_sweep.forward_amp({"precision": "fp32"}, None) is False
    assert gamma_sweep.forward_amp({"precision": "auto"}, "fp32") is False
    assert gamma_sweep.forward_amp({"precision": "fp32"}, "auto") is True
