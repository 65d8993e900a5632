# Aggregation: the tidy performance table and the derived tables.


rule aggregate:
    input:
        metrics=all_metrics(),
        manifests=all_manifests(),
    output:
        perf="results/perf.csv",
        mrc="results/mrc.csv",
    params:
        manifests=manifest_args,
        mrc_format=config["analysis"]["mrc"]["format"],
        mrc_base_shots=config["analysis"]["mrc"]["base_shots"],
        mrc_ft_shots=config["analysis"]["mrc"]["finetuned_shots"],
    log:
        "logs/aggregate/aggregate.log",
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.aggregate --metrics {input.metrics} --manifest {params.manifests}"
        " --perf {output.perf} --mrc {output.mrc} --mrc-format {params.mrc_format}"
        " --mrc-base-shots {params.mrc_base_shots} --mrc-ft-shots {params.mrc_ft_shots}"
        " --log-summary 2> {log}"
