# Iterative inference (METHOD.md §6): all conditions of a subject (clean, artefacts,
# severity levels) advance in lockstep on the device. resources.infer_subjects_per_job sets
# how many subjects of one experiment and dataset share a job: 1 (default, clusters): rule
# `infer`, one job per subject, in the per-subject group; N > 1, or 0 = all (local runs, the
# demo): rules `infer__<experiment>__<dataset>__<chunk>`, one process for N subjects, whose
# conditions advance in lockstep together (fewer process starts, fuller batches). The outputs
# (one folder per subject) and their seeds are the same either way. A chunk job asks for
# infer_runtime per subject and infer_mem_mb per job (it holds all its subjects' volumes:
# set infer_mem_mb for the chunk size).

include: "inputs/infer.smk"


if RES.infer_subjects_per_job == 1:

    rule infer:
        input:
            unpack(infer_inputs),
        output:
            directory(INFERENCE),
        params:
            settings=lambda w: inference_settings(w.experiment),
            runs=infer_runs,
            field_of_view_mm=STUDY.preprocess.slices2d.field_of_view_mm,
            channels_last=RES.channels_last,
        log:
            f"{R}/logs/infer/{{experiment}}_{{dataset}}_{{subject}}.log",
        benchmark:
            f"{R}/benchmarks/infer/{{experiment}}_{{dataset}}_{{subject}}.tsv"
        group:
            cluster_group("inference")
        conda:
            "../envs/torch.yaml"
        threads: RES.threads
        resources:
            mem_mb=RES.infer_mem_mb,
            runtime=RES.infer_runtime,
            gpu=STUDY.torch_gpus,
        script:
            "../workflow_scripts/infer.py"

else:
    for _exp, _ds, _chunk, _subjects in inference_chunks(RES.infer_subjects_per_job):

        rule:
            name:
                f"infer__{_exp}__{_ds}__{_chunk}"
            input:
                unpack(chunk_inputs(_exp, _ds, _subjects)),
            output:
                [directory(path(INFERENCE, experiment=_exp, dataset=_ds, subject=s)) for s in _subjects],
            params:
                settings=inference_settings(_exp),
                runs=chunk_runs(_exp, _ds, _subjects),
                field_of_view_mm=STUDY.preprocess.slices2d.field_of_view_mm,
                channels_last=RES.channels_last,
            log:
                f"{R}/logs/infer/{_exp}_{_ds}_chunk{_chunk}.log",
            benchmark:
                f"{R}/benchmarks/infer/{_exp}_{_ds}_chunk{_chunk}.tsv"
            conda:
                "../envs/torch.yaml"
            threads: RES.threads
            resources:
                mem_mb=RES.infer_mem_mb,
                runtime=RES.infer_runtime * len(_subjects),
                gpu=STUDY.torch_gpus,
            script:
                "../workflow_scripts/infer.py"
