"""The paper's analyses, as pure functions over the tidy perf table and per-example scores.

- `scores`: per-example scores (from each evaluation's predictions.jsonl), paired by item id.
- `mrc`: cross-task mean ratio of change by direction, with slope across checkpoints (§6.2).
- `ood`: out-of-domain change ratio per training task (§6.3, Fig. 7).
- `groups`: learned-in-pre-training vs learned-in-fine-tuning sets and Table 5 (§4–5).
- `formats`: spread of performance across prompt formats (§6.1, Fig. 5/13).
- `cost`: compute per experiment type from benchmark and timing files (Table 2).
"""
