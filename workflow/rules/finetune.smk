# Supervised fine-tuning: one job per (checkpoint, training task).


rule finetune:
    input:
        checkpoint=finetune_checkpoint,
        train=finetune_train_file,
    output:
        model=directory("results/models/{model}/step{step}/sft-{task}"),
    params:
        task=finetune_task,
        settings=finetune_settings,
    threads: config["finetune"].get("threads", 1)
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        "logs/finetune/{model}/step{step}/{task}.log",
    benchmark:
        "results/benchmarks/finetune/{model}/step{step}/{task}.tsv"
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.finetune --checkpoint {input.checkpoint} --train {input.train}"
        " --task {params.task:q} --settings {params.settings:q} --out {output.model}"
        " --threads {threads} 2> {log}"
