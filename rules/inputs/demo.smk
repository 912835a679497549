# Input functions and parameters of the rules in rules/demo.smk.


def demo_outputs():
    name = STUDY.demo_dataset
    if name is None:
        return []
    d = STUDY.datasets[name]
    files = [d.image(s, q) for s in d.subjects for q in d.sequences]
    files += [d.label(s) for s in d.subjects if d.label(s)]
    return files
