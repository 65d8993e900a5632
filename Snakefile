# amuro: how do pre-training and fine-tuning interact? See README.md.
from snakemake.utils import min_version

min_version("9.0")


# A --configfile on the command line replaces the default study instead of being merged into
# it key by key (Snakemake's default), which would mix the two grids.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"



include: "workflow/rules/common.smk"
include: "workflow/rules/world.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/checkpoints.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),


# Everything that needs the network (dataset downloads, hub checkpoints), for a login node:
# `snakemake resources`, then run the rest where there is no network.
rule resources:
    input:
        downloads(),
        fetched_checkpoints(),
    localrule: True
