# Checkpoint series that are not pre-trained here: fetched from the hub, a local folder per
# checkpoint or a .gguf file into resources/models/<series>/step<N> (safetensors, HF layout),
# with a record per checkpoint (revision, commit sha, tokens, sha256) and the series manifest.
# Local rules: hub downloads need the network, which cluster compute nodes often lack.


for _series in FETCHED:

    rule:
        name:
            f"fetch_{_series}"
        output:
            model=directory(f"resources/models/{_series}/step{{step}}"),
            record=f"results/checkpoints/{_series}/records/step{{step}}.json",
        wildcard_constraints:
            step=_alternatives([str(s) for s in model_steps(_series)]),
        params:
            source=lambda wildcards, series=_series: fetch_source(series),
            which=lambda wildcards, series=_series: fetch_which(series, int(wildcards.step)),
        localrule: True
        log:
            f"logs/fetch/{_series}/step{{step}}.log",
        conda:
            "../envs/amuro.yaml"
        shell:
            "python -m amuro.fetch_checkpoint --source {params.source:q} {params.which:q}"
            " --out {output.model:q} --record {output.record:q} 2> {log:q}"

    rule:
        name:
            f"manifest_{_series}"
        input:
            [f"results/checkpoints/{_series}/records/step{s}.json"
             for s in model_steps(_series)],
        output:
            f"results/checkpoints/{_series}/manifest.json",
        params:
            series=_series,
        localrule: True
        log:
            f"logs/fetch/{_series}/manifest.log",
        conda:
            "../envs/amuro.yaml"
        shell:
            "python -m amuro.fetch_checkpoint manifest --records {input:q} --model {params.series:q}"
            " --out {output:q} 2> {log:q}"
