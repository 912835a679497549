# Input functions and parameters of the rules in rules/demo.smk.
from itermask.demo.files import demo_files, demo_outputs as demo_file_list

# generate_demo's arguments for the demo dataset (splits, images, labels, participants_tsv), {} without one;
# the rule's outputs: the images and labels (demo_outputs), participants_tsv
DEMO_FILES = demo_files(STUDY.datasets[STUDY.demo_dataset]) if STUDY.demo_dataset else {}


def demo_outputs():
    return demo_file_list(DEMO_FILES) if DEMO_FILES else []
