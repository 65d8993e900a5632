# Pre-training of each `source: pretrain` series: one job writes all of its checkpoints.
# One rule per series, so every checkpoint folder is a declared output.

for series, spec in MODELS.items():
    if spec["source"] != "pretrain":
        continue

    rule:
        name:
            f"pretrain_{series}"
        input:
            corpus="results/world/corpus.txt",
        output:
            manifest=f"results/checkpoints/{series}/manifest.json",
            timing=f"results/checkpoints/{series}/timing.json",
            checkpoints=[directory(checkpoint_dir(series, s)) for s in model_steps(series)],
        params:
            out_dir=series_dir,
            steps=model_steps(series),
            model_config=json.dumps(config["pretrain"]["model_config"], sort_keys=True),
            train=json.dumps(config["pretrain"]["train"], sort_keys=True),
            whole_words=LABEL_WORDS,
            seed=config["pretrain"]["seed"],
        threads: config["pretrain"].get("threads", 2)
        resources:
            **stage("pretrain"),
        log:
            f"logs/pretrain/{series}.log",
        benchmark:
            f"results/benchmarks/pretrain/{series}.tsv"
        conda:
            "../envs/amuro.yaml"
        shell:
            "python -m amuro.pretrain --corpus {input.corpus:q} --out-dir {params.out_dir:q}"
            " --save-steps {params.steps:q} --model-config {params.model_config:q}"
            " --train {params.train:q} --whole-words {params.whole_words:q}"
            " --seed {params.seed:q} --threads {threads:q} --timing {output.timing:q} 2> {log:q}"
