# Aggregation: the tidy performance table with bootstrap intervals, every fine-tuned cell
# against its base checkpoint, and all per-example scores for the analysis tables.


rule aggregate:
    input:
        metrics=all_metrics(),
        predictions=all_predictions(),
        manifests=all_manifests(),
    output:
        perf="results/perf.csv",
        diff="results/ft_vs_base.csv",
        scores="results/scores.parquet",
    params:
        manifests=manifest_args,
        base_shots=config["analysis"]["compare"]["base_shots"],
        ft_shots=config["analysis"]["compare"]["finetuned_shots"],
        resamples=config["analysis"]["bootstrap"]["resamples"],
        seed=config["analysis"]["bootstrap"]["seed"],
    localrule: True
    log:
        "logs/aggregate/aggregate.log",
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.aggregate --metrics {input.metrics:q} --manifest {params.manifests:q}"
        " --perf {output.perf:q} --diff {output.diff:q} --scores {output.scores:q}"
        " --base-shots {params.base_shots:q} --ft-shots {params.ft_shots:q}"
        " --bootstrap-resamples {params.resamples:q} --bootstrap-seed {params.seed:q}"
        " --log-summary 2> {log:q}"
