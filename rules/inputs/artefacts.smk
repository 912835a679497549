# Input functions and parameters of the rules in rules/artefacts.smk.


ARTEFACTS = STUDY.artefact_conditions()


def artefacts_inputs(wildcards):
    w = dict(dataset=wildcards.dataset, subject=wildcards.subject)
    files = {"image": path(IMAGE, sequence=wildcards.sequence, **w), "brain": path(BRAIN, **w)}
    if "other_sequence" in {STUDY.artefact_params(a)[0] for a in ARTEFACTS}:
        files["other"] = path(IMAGE, sequence=STUDY.config["artefacts"]["other_sequence"], **w)
    return files
