"""The paper's analyses, as pure functions over the tidy perf table and per-example scores.

- `scores`: per-example scores (from each evaluation's predictions.jsonl), paired by item id.
- `mrc`: cross-task mean ratio of change by direction, with slope across checkpoints (§6.2).
- `ood`: out-of-domain change ratio per training task (§6.3, Fig. 7).
- `groups`: learned-in-pre-training vs learned-in-fine-tuning sets and Table 5 (§4–5).
- `formats`: spread of performance across prompt formats (§6.1, Fig. 5/13).
- `cost`: compute per experiment type from benchmark and timing files (Table 2).
"""

# A cell scored with several metrics (multiple choice: acc and acc_norm) keeps every metric in
# perf.csv, ft_vs_base.csv, groups.csv and ood.csv; means pooled over sets (the MRC, Table 5)
# leave these out, so each set counts once, by its primary metric.
SECONDARY_METRICS = frozenset({"acc_norm"})

# The tuning label of instruction-tuned models (paper §3.2) in perf.csv.
INSTRUCTION_TUNING = "it"
