"""Real task data: read files in their original formats and map rows to task records.

- `amuro.data.readers`: one local file (TSV, JSONL, JSON array, CSV, parquet) -> list of rows.
- `amuro.data.adapters`: one adapter per dataset, row -> record (or a reason to drop it).
- `python -m amuro.prepare_data`: both, plus seeded subsampling and the demonstration pool.
- `python -m amuro.download_dataset`: fetch a hub split to parquet (on a networked machine).
"""
