# Real datasets: download (local rules, writing under resources/) and map to task records.
# Tiny-world datasets come from rule make_world instead.


rule download_hub:
    output:
        "resources/hub/{owner}/{repo}/{config}/{split}.parquet",
    wildcard_constraints:
        owner=r"[^/]+",
        repo=r"[^/]+",
        config=r"[^/]+",
    params:
        args=hub_download_args,
    localrule: True
    log:
        "logs/download/hub/{owner}/{repo}/{config}/{split}.log",
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.download_dataset {params.args:q} --out {output:q} 2> {log:q}"


rule download_url:
    output:
        "resources/url/{ds}/{split}.{ext}",
    wildcard_constraints:
        ds=_alternatives(REAL_DATASETS),
        split="train|test|demo",
    params:
        args=url_download_args,
    localrule: True
    log:
        "logs/download/url/{ds}/{split}.{ext}.log",
    conda:
        "../envs/amuro.yaml"
    shell:
        "python -m amuro.download_dataset {params.args:q} --out {output:q} 2> {log:q}"


for _ds in REAL_DATASETS:

    rule:
        name:
            f"prepare_{_ds}"
        input:
            [dataset_source(_ds, split) for split in splits_needed(_ds)],
        output:
            data=prepared_files(_ds),
            summary=f"results/data/{_ds}/summary.json",
        params:
            args=prepare_args(_ds),
            out_dir=f"results/data/{_ds}",
        localrule: True
        log:
            f"logs/prepare/{_ds}.log",
        conda:
            "../envs/amuro.yaml"
        shell:
            "python -m amuro.prepare_data {params.args:q} --out-dir {params.out_dir:q} 2> {log:q}"
