# Evaluation: one job (one process, one model load) per model = checkpoint × tuning. On a
# cluster, the evaluations of one checkpoint (base, fine-tuned, instruction-tuned) go out as
# one submission (group) and run one after another on the same GPU(s): each holds one
# `evaluate_slots`, and the SLURM profile allows one per submission (scope local), so
# Snakemake takes the maximum of the jobs' GPUs, CPUs and memory instead of their sum (run
# times add up). Local runs ignore groups.


rule evaluate:
    input:
        unpack(eval_inputs),
    output:
        metrics="results/eval/{model}/step{step}/{tuning}/metrics.csv",
        predictions="results/eval/{model}/step{step}/{tuning}/predictions.jsonl",
        timing="results/eval/{model}/step{step}/{tuning}/timing.json",
    params:
        plan=eval_plan,
        meta=eval_meta,
    threads: config["evaluate"].get("threads", 1)
    group:
        "evaluate_{model}_step{step}"
    resources:
        **stage("evaluate"),
        evaluate_slots=1,
    log:
        "logs/evaluate/{model}/step{step}/{tuning}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/step{step}/{tuning}.tsv"
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.evaluate --model {input.model:q} --plan {params.plan:q}"
        " --meta {params.meta:q} --metrics {output.metrics:q}"
        " --predictions {output.predictions:q} --timing {output.timing:q}"
        " --threads {threads:q} 2> {log:q}"
