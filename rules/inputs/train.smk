# Input functions and parameters of the rules in rules/train.smk.


def input_item(spec, settings, dataset, subject):
    """The files of one subject as a method's InputSpec asks for them (with the subject ID):
    {"subject", "slices"} for slice inputs; {"subject", "image", "hf" (spec.hf), "brain"} for
    volumes; + "sequences": {name: file} for the spec's further sequences (their image, or
    their slices file)."""
    w = dict(dataset=dataset, subject=subject)
    if spec.kind == "slices":
        item = {"subject": subject, "slices": path(SLICES, sequence=settings.sequence, radius=settings.hf_radius, **w)}
        if spec.sequences:
            item["sequences"] = {q: path(SLICES, sequence=q, radius=settings.hf_radius, **w) for q in spec.sequences}
        return item
    item = {"subject": subject, "image": path(IMAGE, sequence=settings.sequence, **w)}
    if spec.hf:
        item["hf"] = path(HF, sequence=settings.sequence, radius=settings.hf_radius, **w)
    item["brain"] = path(BRAIN, **w)
    if spec.sequences:
        item["sequences"] = {q: path(IMAGE, sequence=q, **w) for q in spec.sequences}
    return item


def train_items(experiment, split):
    s = STUDY.settings(experiment)
    spec = STUDY.train_spec(experiment)
    return [input_item(spec, s, s.dataset, subj) for subj in STUDY.datasets[s.dataset].splits.get(split, ())]


def item_files(item):
    """The paths of an input item (or condition) dict, in order."""
    out = []
    for key, value in item.items():
        if isinstance(value, dict):
            out += list(value.values())
        elif key != "subject" and value:
            out.append(value)
    return out


def train_inputs(wildcards):
    items = train_items(wildcards.experiment, "train") + train_items(wildcards.experiment, "val")
    return sorted({f for item in items for f in item_files(item)})
