# Aggregation: the tidy performance table (with bootstrap intervals) and the derived tables.


rule aggregate:
    input:
        metrics=all_metrics(),
        predictions=all_predictions(),
        manifests=all_manifests(),
    output:
        perf="results/perf.csv",
        mrc="results/mrc.csv",
        diff="results/ft_vs_base.csv",
    params:
        manifests=manifest_args,
        mrc_format=config["analysis"]["mrc"]["format"],
        mrc_base_shots=config["analysis"]["mrc"]["base_shots"],
        mrc_ft_shots=config["analysis"]["mrc"]["finetuned_shots"],
        resamples=config["analysis"]["bootstrap"]["resamples"],
        seed=config["analysis"]["bootstrap"]["seed"],
    log:
        "logs/aggregate/aggregate.log",
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.aggregate --metrics {input.metrics} --manifest {params.manifests}"
        " --perf {output.perf} --mrc {output.mrc} --diff {output.diff}"
        " --mrc-format {params.mrc_format}"
        " --mrc-base-shots {params.mrc_base_shots} --mrc-ft-shots {params.mrc_ft_shots}"
        " --bootstrap-resamples {params.resamples} --bootstrap-seed {params.seed}"
        " --log-summary 2> {log}"
