"""Rule failed_skullstrip_masks -> itermask.artefacts.failed_skullstrip.make_subject_masks."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
smk = snakemake  # noqa: F821
from itermask.artefacts.failed_skullstrip import make_subject_masks  # noqa: E402
from itermask.io.workflow import amp_of, rule_context  # noqa: E402

with rule_context(smk):
    s = smk.params.settings
    make_subject_masks(
        smk.input.image, smk.input.deepbet, {"hd_bet": smk.output.hd_bet, "template": smk.output.template},
        smk.output.outlier, smk.output.agreement, dataset=smk.wildcards.dataset, subject=smk.wildcards.subject,
        device=smk.params.device, amp=amp_of(smk), hd_bet_mode=s["hd_bet_mode"], hd_bet_tta=s["hd_bet_tta"],
        template_spacing_mm=s["template_spacing_mm"],
    )
