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
        "python -m amuro.tables mrc --perf {input.perf:q} --scores {input.scores:q}"
        " {params.compare:q} --slope-unit {params.unit:q}"
        " --out {output.mrc:q} --summary {output.summary:q} 2> {log:q}"


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
        "python -m amuro.tables ood --perf {input.perf:q} --scores {input.scores:q}"
        " {params.compare:q} --out {output:q} 2> {log:q}"


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
        "python -m amuro.tables groups --perf {input.perf:q} --scores {input.scores:q}"
        " {params.compare:q} --min-rise {params.min_rise:q}"
        " --out {output.groups:q} --gain {output.gain:q} 2> {log:q}"


rule table_formats:
    input:
        perf="results/perf.csv",
        scores="results/scores.parquet",
    output:
        spread="results/format.csv",
        summary="results/format_summary.csv",
        change="results/format_change.csv",
    params:
        base_shots=config["analysis"]["compare"]["base_shots"],
        ft_shots=config["analysis"]["compare"]["finetuned_shots"],
        resamples=config["analysis"]["bootstrap"]["resamples"],
        seed=config["analysis"]["bootstrap"]["seed"],
    localrule: True
    log:
        "logs/tables/formats.log",
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.tables formats --perf {input.perf:q}"
        " --base-shots {params.base_shots:q} --ft-shots {params.ft_shots:q}"
        " --scores {input.scores:q} --bootstrap-resamples {params.resamples:q}"
        " --bootstrap-seed {params.seed:q} --out {output.spread:q}"
        " --summary {output.summary:q} --change {output.change:q} 2> {log:q}"


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
        " --train-format {params.train_format:q} --out {output:q} 2> {log:q}"
