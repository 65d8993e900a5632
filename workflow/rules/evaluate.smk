# Evaluation: one job (one process, one model load) per model = checkpoint × tuning.


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
    resources:
        **stage("evaluate"),
    log:
        "logs/evaluate/{model}/step{step}/{tuning}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/step{step}/{tuning}.tsv"
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.evaluate --model {input.model} --plan {params.plan:q}"
        " --meta {params.meta:q} --metrics {output.metrics}"
        " --predictions {output.predictions} --timing {output.timing}"
        " --threads {threads} 2> {log}"
