# Supervised fine-tuning: one job per (checkpoint, training task). A task with a list of
# learning rates trains one candidate per rate and keeps the one with the lowest loss on a
# held-out slice of its training data (rule select_lr), so evaluation uses the chosen run.
# Every training job saves resumable state under resume/ (config `resume`, and on SIGTERM):
# when Snakemake retries a preempted or killed job, it continues from there. With more than
# one GPU (resources.<stage>.gpu), the job runs one process per GPU under torchrun.


rule finetune:
    input:
        checkpoint=finetune_checkpoint,
        train=finetune_train_file,
    output:
        model=directory("results/models/{model}/step{step}/sft-{task}-seed{seed}"),
    wildcard_constraints:
        task=_alternatives(DIRECT_TASKS),
    params:
        task=finetune_task,
        settings=finetune_settings,
        state=lambda wildcards, output: resume_dir(output.model),
    threads: config["finetune"].get("threads", 1)
    resources:
        **training_stage("finetune"),
    log:
        "logs/finetune/{model}/step{step}/{task}-seed{seed}.log",
    benchmark:
        "results/benchmarks/finetune/{model}/step{step}/{task}-seed{seed}.tsv"
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.finetune --checkpoint {input.checkpoint:q} --train {input.train:q}"
        " --task {params.task:q} --settings {params.settings:q} --out {output.model:q}"
        " --threads {threads:q} --gpus {resources.gpu:q} --state-dir {params.state:q}"
        " --save-every-steps {resources.resume_every_steps:q}"
        " --save-every-minutes {resources.resume_every_minutes:q} 2> {log:q}"


rule finetune_candidate:
    input:
        checkpoint=finetune_checkpoint,
        train=finetune_train_file,
    output:
        model=directory(
            "results/models/{model}/step{step}/candidates/sft-{task}-seed{seed}/lr{lr}"
        ),
    wildcard_constraints:
        task=_alternatives(GRID_TASKS),
        lr=r"[0-9.e+-]+",
    params:
        task=finetune_task,
        settings=finetune_settings,
        state=lambda wildcards, output: resume_dir(output.model),
    threads: config["finetune"].get("threads", 1)
    resources:
        **training_stage("finetune"),
    log:
        "logs/finetune/{model}/step{step}/{task}-seed{seed}-lr{lr}.log",
    benchmark:
        "results/benchmarks/finetune/{model}/step{step}/{task}-seed{seed}-lr{lr}.tsv"
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.finetune --checkpoint {input.checkpoint:q} --train {input.train:q}"
        " --task {params.task:q} --settings {params.settings:q} --out {output.model:q}"
        " --threads {threads:q} --gpus {resources.gpu:q} --state-dir {params.state:q}"
        " --save-every-steps {resources.resume_every_steps:q}"
        " --save-every-minutes {resources.resume_every_minutes:q} 2> {log:q}"


rule select_lr:
    input:
        lr_candidates,
    output:
        model=directory("results/models/{model}/step{step}/sft-{task}-seed{seed}"),
    wildcard_constraints:
        task=_alternatives(GRID_TASKS),
    localrule: True
    log:
        "logs/select_lr/{model}/step{step}/{task}-seed{seed}.log",
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.select_lr --candidates {input:q} --out {output.model:q} 2> {log:q}"


# Instruction tuning: one job per checkpoint on the chat mixture (loss on assistant turns).
rule instruction_tune:
    input:
        checkpoint=lambda wildcards: checkpoint_dir(wildcards.model, wildcards.step),
        train=lambda wildcards: f"results/data/{IT['dataset']}/train.jsonl",
    output:
        model=directory("results/models/{model}/step{step}/it"),
    params:
        task=it_task,
        settings=it_settings,
        state=lambda wildcards, output: resume_dir(output.model),
    threads: (IT or {}).get("threads", 1)
    resources:
        **training_stage("instruction_tune"),
    log:
        "logs/instruction_tune/{model}/step{step}.log",
    benchmark:
        "results/benchmarks/instruction_tune/{model}/step{step}.tsv"
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.finetune --checkpoint {input.checkpoint:q} --train {input.train:q}"
        " --task {params.task:q} --settings {params.settings:q} --out {output.model:q}"
        " --threads {threads:q} --gpus {resources.gpu:q} --state-dir {params.state:q}"
        " --save-every-steps {resources.resume_every_steps:q}"
        " --save-every-minutes {resources.resume_every_minutes:q} 2> {log:q}"
