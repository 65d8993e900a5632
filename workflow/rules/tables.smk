# The paper's analyses, one table (or a table and its summary) per rule: each is its own target.


rule table_mrc:
    input:
        perf="results/perf.csv",
        scores="results/scores.parquet",
    output:
        mrc="results/mrc.csv",
        summary="results/mrc_summary.csv",
    params:
        compare=compare_args,
        unit=config["analysis"]["slope_unit_steps"],
    localrule: True
    log:
        "logs/tables/mrc.log",
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.tables mrc --perf {input.perf} --scores {input.scores}"
        " {params.compare} --slope-unit {params.unit}"
        " --out {output.mrc} --summary {output.summary} 2> {log}"


rule table_ood:
    input:
        perf="results/perf.csv",
        scores="results/scores.parquet",
    output:
        "results/ood.csv",
    params:
        compare=compare_args,
    localrule: True
    log:
        "logs/tables/ood.log",
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.tables ood --perf {input.perf} --scores {input.scores}"
        " {params.compare} --out {output} 2> {log}"


rule table_groups:
    input:
        perf="results/perf.csv",
        scores="results/scores.parquet",
    output:
        groups="results/groups.csv",
        gain="results/ft_gain_by_group.csv",
    params:
        compare=compare_args,
        min_rise=config["analysis"]["groups"]["min_rise"],
    localrule: True
    log:
        "logs/tables/groups.log",
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.tables groups --perf {input.perf} --scores {input.scores}"
        " {params.compare} --min-rise {params.min_rise}"
        " --out {output.groups} --gain {output.gain} 2> {log}"


rule table_formats:
    input:
        perf="results/perf.csv",
    output:
        spread="results/format.csv",
        summary="results/format_summary.csv",
    params:
        base_shots=config["analysis"]["compare"]["base_shots"],
        ft_shots=config["analysis"]["compare"]["finetuned_shots"],
    localrule: True
    log:
        "logs/tables/formats.log",
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.tables formats --perf {input.perf}"
        " --base-shots {params.base_shots} --ft-shots {params.ft_shots}"
        " --out {output.spread} --summary {output.summary} 2> {log}"


# Benchmark files are written by Snakemake after each job, so they are read, not declared as
# inputs; depending on every job's outputs guarantees they exist.
rule table_cost:
    input:
        metrics=all_metrics(),
        models=all_finetuned(),
        manifests=all_manifests(),
    output:
        "results/cost.csv",
    params:
        jobs=cost_jobs,
        train_format=config["finetune"]["format"],
    localrule: True
    log:
        "logs/tables/cost.log",
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.tables cost --jobs {params.jobs:q}"
        " --train-format {params.train_format} --out {output} 2> {log}"
