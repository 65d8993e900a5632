import csv
import json

from amuro.evaluate import COLUMNS, main, row_role
from amuro.tasks import eval_set_to_dict

EXPECTED_COLUMNS = (
    "model,step,tuning,train_task,seed,eval_task,eval_type,eval_set,role,format,shots,"
    "metric,value,n,n_truncated,scoring"
).split(",")


def _argv(ckpt, sets, out, meta=None, **plan_extra):
    plan = {
        "sets": [eval_set_to_dict(s) for s in sets],
        "formats": ["default", "io"],
        "shots": [0, 4],
        "seed": 1234,
        "batch_size": 4,
        "max_items": None,
        **plan_extra,
    }
    meta = meta or {"model": "tiny", "step": 800, "tuning": "sft", "train_task": "nli"}
    return [
        "--model", str(ckpt),
        "--plan", json.dumps(plan),
        "--meta", json.dumps(meta),
        "--metrics", str(out / "metrics.csv"),
        "--predictions", str(out / "predictions.jsonl"),
        "--timing", str(out / "timing.json"),
        "--threads", "1",
    ]  # fmt: skip


def test_evaluate_end_to_end(tiny_checkpoint, eval_sets, tmp_path, capsys):
    out = tmp_path / "out"
    main(_argv(tiny_checkpoint, eval_sets.values(), out))

    with (out / "metrics.csv").open() as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == EXPECTED_COLUMNS == COLUMNS
    assert len(rows) == 2 * 2 * 2  # sets x formats x shots
    cells = {(r["eval_set"], r["format"], r["shots"]) for r in rows}
    assert len(cells) == 8
    by_set = {r["eval_set"]: r for r in rows}
    nli, summ = by_set["tw_nli"], by_set["tw_summ"]
    assert (nli["role"], nli["scoring"], nli["metric"], nli["n"]) == (
        "ID", "first_subtoken", "accuracy", "6"
    )  # fmt: skip
    assert (summ["role"], summ["scoring"], summ["metric"], summ["n"]) == (
        "cross", "greedy", "rougeL", "5"
    )  # fmt: skip
    assert all(r["model"] == "tiny" and r["step"] == "800" for r in rows)
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows)
    # 4-shot NLI prompts overflow the 128-token context: the policy touched them.
    assert any(int(r["n_truncated"]) > 0 for r in rows if r["shots"] == "4")
    assert all(r["n_truncated"] == "0" for r in rows if r["shots"] == "0")

    preds = [json.loads(line) for line in (out / "predictions.jsonl").open()]
    assert len(preds) == 2 * 2 * (6 + 5)
    assert list(preds[0]) == [
        "eval_set", "format", "shots", "metric", "id", "prediction", "target", "score",
        "truncation",
    ]  # fmt: skip
    nli_preds = [p for p in preds if p["eval_set"] == "tw_nli"]
    assert {p["metric"] for p in nli_preds} == {"accuracy"}
    assert {p["metric"] for p in preds if p["eval_set"] == "tw_summ"} == {"rougeL"}
    assert {p["prediction"] for p in nli_preds} <= {"entailment", "neutral", "contradiction"}

    timing = json.loads((out / "timing.json").read_text())
    assert {"import", "load_model", "evaluate", "total"} <= set(timing)
    assert "[evaluate] tw_nli default 4-shot: accuracy=" in capsys.readouterr().err


def test_fixed_demonstrations_score_the_same_with_and_without_the_prefix_cache(
        tiny_checkpoint, eval_sets, tmp_path):
    runs = {}
    for cache in (True, False):
        out = tmp_path / f"cache{cache}"
        main(_argv(tiny_checkpoint, eval_sets.values(), out, shots=[0, 2],
                   demonstrations="fixed", prefix_cache=cache,
                   meta={"model": "tiny", "step": 8, "tuning": "sft", "train_task": "nli",
                         "seed": 3}))
        runs[cache] = [json.loads(line) for line in (out / "predictions.jsonl").open()]
        rows = list(csv.DictReader((out / "metrics.csv").open()))
        assert {r["seed"] for r in rows} == {"3"}
    assert len(runs[True]) == 2 * 2 * (6 + 5)
    assert [(p["prediction"], p["score"]) for p in runs[True]] == [
        (p["prediction"], p["score"]) for p in runs[False]]


def test_zero_shot_formats_limit_the_zero_shot_cells(tiny_checkpoint, eval_sets, tmp_path):
    out = tmp_path / "out"
    main(_argv(tiny_checkpoint, [eval_sets["tw_nli"]], out, zero_shot_formats=["default"]))
    cells = {(r["format"], r["shots"]) for r in csv.DictReader((out / "metrics.csv").open())}
    assert cells == {("default", "0"), ("default", "4"), ("io", "4")}
    out = tmp_path / "out2"
    main(_argv(tiny_checkpoint, eval_sets.values(), out, set_formats={"tw_summ": ["io"]}))
    cells = {(r["eval_set"], r["format"], r["shots"])
             for r in csv.DictReader((out / "metrics.csv").open())}
    assert {(f, k) for s, f, k in cells if s == "tw_summ"} == {("io", "0"), ("io", "4")}
    assert len([c for c in cells if c[0] == "tw_nli"]) == 4


def test_evaluate_max_items_and_deterministic(tiny_checkpoint, eval_sets, tmp_path):
    nli = [eval_sets["tw_nli"]]
    main(_argv(tiny_checkpoint, nli, tmp_path / "a", max_items=3))
    main(_argv(tiny_checkpoint, nli, tmp_path / "b", max_items=3))
    a = (tmp_path / "a" / "predictions.jsonl").read_text()
    assert a == (tmp_path / "b" / "predictions.jsonl").read_text()
    assert len(a.splitlines()) == 2 * 2 * 3


def test_label_not_in_label_set_fails_cleanly(tiny_checkpoint, eval_sets, tmp_path, cli_error):
    s = eval_sets["tw_nli"]
    with open(s.test_path, "a") as fh:
        fh.write(json.dumps({"id": "bad7", "fields": {"premise": "a", "hypothesis": "b"},
                             "target": "maybe"}) + "\n")  # fmt: skip
    out = tmp_path / "out"
    err = cli_error(main, _argv(tiny_checkpoint, [s], out))
    assert s.test_path in err and "'bad7'" in err and "'target'" in err and "'maybe'" in err
    assert "entailment" in err
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_row_role(eval_sets):
    nli, summ = eval_sets["tw_nli"], eval_sets["tw_summ"]
    assert row_role(summ, "") == "OOD"  # base model: the set's own role
    assert row_role(nli, "nli") == "ID"
    assert row_role(summ, "nli") == "cross"
