"""itermask.evaluation.run_captions: caption sentences on what the runs did, from table rows."""
from __future__ import annotations

from itermask.evaluation.layout import Row
from itermask.evaluation.run_captions import convergence_text, inpainting_text


def test_inpainting_text_weights_blocks_by_scans_and_says_each_experiment_once():
    ddpm = Row("DDPM", False, "paper", inpainting={("ddpm", "a"): (0.5, 2), ("ddpm", "b"): (0.8, 2)})
    again = Row("DDPM, honest", False, "honest", inpainting={("ddpm", "a"): (0.5, 2), ("ddpm", "b"): (0.8, 2)})
    auto = Row("AutoDDPM", False, "paper", inpainting={("autoddpm", "a"): (0.784, 5)})
    grey = Row("AutoDDPM †", True, "per_image_best", inpainting={("autoddpm_other", "a"): (0.1, 5)})
    text = inpainting_text([ddpm, again, auto, grey, Row("IterMask2", False, "paper")])
    assert text == ("Inpainting masks (DDPM: the initial mask; AutoDDPM: the combined mask), mean fraction of the "
                    "brain: DDPM 65 % (4 scans); AutoDDPM 78 % (5 scans).")
    assert inpainting_text([Row("AE", False, "paper")]) == ""


def test_convergence_text_counts_converged_scans_per_row():
    row = Row("IterMask3D", False, "paper", convergence={("im3d", "a"): (3, 4, 2, 20, 1, 4)})
    text = convergence_text([row])
    assert text.startswith("Iterative masks converged (change < tol before the cap), subjects: IterMask3D 3/4 "
                           "(2–20 iterations; 1 stopped at the cap; τ at the phase-A curve's first point for 1 of 4)")
    assert convergence_text([Row("AE", False, "paper")]) == ""
