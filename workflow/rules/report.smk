# Figures 2–13 (PNG + PDF) and the HTML report that states each finding with its interval.

FIGURE_TABLES = ["perf", "ft_vs_base", "groups", "ft_gain_by_group", "ood", "format"]


rule figures:
    input:
        [f"results/{name}.csv" for name in FIGURE_TABLES],
    output:
        directory("results/figures"),
    params:
        fmt=config["analysis"]["compare"]["format"],
        base_shots=config["analysis"]["compare"]["base_shots"],
        ft_shots=config["analysis"]["compare"]["finetuned_shots"],
    localrule: True
    log:
        "logs/report/figures.log",
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.figures --results results --out {output:q}"
        " --format {params.fmt:q} --base-shots {params.base_shots:q} --ft-shots {params.ft_shots:q}"
        " 2> {log:q}"


rule report:
    input:
        tables=[f"results/{name}.csv" for name in TABLES],
        figures="results/figures",
    output:
        "results/report.html",
    params:
        # a function: config strings such as "step{step}-" must not be expanded as wildcards
        config=lambda wildcards: json.dumps(config, sort_keys=True),
    localrule: True
    log:
        "logs/report/report.log",
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.report --results results --figures {input.figures:q}"
        " --config-json {params.config:q} --out {output:q} 2> {log:q}"
