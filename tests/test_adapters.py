"""Readers and dataset adapters against real samples (../shared/data) and hub-schema rows."""

from __future__ import annotations

import collections
import json
import string

import pytest
from shared_data import DATA

from amuro.data.adapters import (
    ADAPTERS,
    R_UNLABELED,
    R_UNLABELED_GLUE_PARA,
    Drop,
    SchemaError,
    get_adapter,
    input_key,
)
from amuro.data.readers import MALFORMED, attach_labels, read_labels, read_rows
from amuro.errors import AmuroError
from amuro.prompts import FORMATS, TEMPLATES, render_prompt


@pytest.fixture
def data():
    if not DATA.is_dir():
        pytest.skip(f"real data samples not found at {DATA}")
    return DATA


def run(adapter: str, rows: list[dict], split: str = "test", seed: int = 42):
    """(records, Counter of drop reasons) for rows through an adapter."""
    records, drops = [], collections.Counter()
    for i, row in enumerate(rows):
        out = get_adapter(adapter).apply(row, index=i, split=split, seed=seed)
        if isinstance(out, Drop):
            drops[out.reason] += 1
        else:
            records.append(out)
    return records, drops


def targets(records):
    return collections.Counter(r["target"] for r in records)


# --- every adapter ----------------------------------------------------------------------------
def test_registry_names_and_families():
    assert set(ADAPTERS) == {
        "xsum", "xlsum", "cnn_dailymail", "socialiqa", "sciq", "tweetqa", "mnli", "rte",
        "gpt3nli", "paws", "qqp", "stsb", "tulu", "arc", "openbookqa", "hellaswag", "boolq",
        "sciq_mc", "piqa", "llmbar",
    }
    for a in ADAPTERS.values():
        assert a.family in TEMPLATES or a.family in ("multiple_choice", "pairwise", "chat")
    with pytest.raises(AmuroError, match="unknown; expected one of"):
        get_adapter("mnli_matched")


def _fields_of(template: str) -> set[str]:
    return {name for fmt in FORMATS for _, name, _, _ in string.Formatter().parse(
        TEMPLATES[template][fmt]) if name and name != "labels"}


@pytest.mark.parametrize("adapter,path", [
    ("xsum", "xsum/test.jsonl"), ("cnn_dailymail", "cnn_dailymail/validation.csv"),
    ("sciq", "sciq/test.json"), ("tweetqa", "tweetqa/dev.json"),
    ("mnli", "mnli/dev_matched.tsv"), ("rte", "rte/dev.tsv"), ("paws", "paws/dev.tsv"),
    ("qqp", "qqp/dev.tsv"), ("stsb", "stsb/dev.tsv"),
])
def test_records_render_in_every_format(data, adapter, path):
    a = get_adapter(adapter)
    records, _ = run(adapter, read_rows(data / path))
    assert records
    for rec in records:
        assert set(rec) == {"id", "fields", "target"}
        assert isinstance(rec["id"], str) and rec["id"]
        assert set(rec["fields"]) == _fields_of(a.family)
        assert all(isinstance(v, str) and v == v.strip() and v for v in rec["fields"].values())
        if a.labels:
            assert rec["target"] in a.labels
        for fmt in FORMATS:
            render_prompt(a.family, fmt, rec["fields"], a.labels)


# --- summarization ----------------------------------------------------------------------------
def test_xsum_int_ids(data):
    rows = read_rows(data / "xsum/test.jsonl")
    assert isinstance(rows[0]["id"], int)
    records, drops = run("xsum", rows)
    assert len(records) == 300 and not drops
    assert records[0]["id"] == str(rows[0]["id"]) == "34268361"
    assert records[0]["fields"]["passage"] == rows[0]["document"].strip()
    assert records[0]["target"] == rows[0]["summary"].strip()
    assert len({r["id"] for r in records}) == 300


def test_cnn_dailymail_multiline_csv(data):
    rows = read_rows(data / "cnn_dailymail/validation.csv")
    assert len(rows) == 300 and list(rows[0]) == ["article", "highlights", "id"]
    assert sum("\n" in r["highlights"] for r in rows) > 250  # quoted multi-line fields
    records, drops = run("cnn_dailymail", rows)
    assert len(records) == 300 and not drops
    assert records[0]["target"] == (
        "Zully Broussard decided to give a kidney to a stranger . A new computer program "
        "helped her donation spur transplants for six kidney patients ."
    )
    assert records[0]["id"] == "a4942dd663020ca54575471657a0af38d82897d6"
    assert not any("\n" in r["target"] for r in records)
    assert all(len(r["id"]) == 40 for r in records)


def test_xlsum_hub_rows():
    rows = [{"id": "x1", "url": "u", "title": "t", "text": " Body text. ", "summary": "Sum."},
            {"id": "x2", "url": "u", "title": "t", "text": "", "summary": "Sum."}]
    records, drops = run("xlsum", rows)
    assert records == [{"id": "x1", "fields": {"passage": "Body text."}, "target": "Sum."}]
    assert drops == {"empty text": 1}


# --- question generation ----------------------------------------------------------------------
def test_socialiqa_separate_label_file(data):
    rows = read_rows(data / "socialiqa/dev.jsonl")
    labels = read_labels(data / "socialiqa/dev-labels.lst")
    assert len(rows) == len(labels) == 300 and labels[:3] == ["3", "1", "2"]
    joined = attach_labels(rows, labels, data_path="dev.jsonl", labels_path="dev-labels.lst")
    records, drops = run("socialiqa", joined, split="dev")
    assert len(records) == 300 and not drops
    first = records[0]
    assert first["id"] == "socialiqa-dev-0"
    assert first["fields"] == {"context": rows[0]["context"], "answer": rows[0]["answerC"]}
    assert first["target"] == rows[0]["question"]
    assert records[1]["fields"]["answer"] == rows[1]["answerA"]
    with pytest.raises(AmuroError, match="299 labels for 300 rows"):
        attach_labels(rows, labels[:-1], data_path="dev.jsonl", labels_path="dev-labels.lst")
    with pytest.raises(SchemaError, match="--labels-file"):
        run("socialiqa", rows)
    # hub schema: label in the row, as a string
    hub = {**rows[0], "label": "2"}
    assert run("socialiqa", [hub])[0][0]["fields"]["answer"] == rows[0]["answerB"]
    assert run("socialiqa", [{**rows[0], "label": "4"}])[1] == {
        "unknown label (expected 1/2/3 for answerA/B/C)": 1}


def test_sciq_question_generation(data):
    rows = read_rows(data / "sciq/test.json")
    records, drops = run("sciq", rows)
    empty = sum(not r["support"].strip() for r in rows)
    assert empty == 34
    assert len(records) == 300 - empty and drops == {"empty support": empty}
    rec = records[0]
    assert rec["fields"] == {"context": rows[0]["support"].strip(),
                             "answer": rows[0]["correct_answer"]}
    assert rec["target"] == rows[0]["question"]


def test_tweetqa_answer_list(data):
    rows = read_rows(data / "tweetqa/dev.json")
    records, drops = run("tweetqa", rows)
    assert len(records) == 5 and not drops
    assert [r["fields"]["answer"] for r in records] == [r["Answer"][0] for r in rows]
    assert records[2]["fields"]["answer"] == "he is losing it"  # first of two annotators
    assert [r["id"] for r in records] == [r["qid"] for r in rows]
    assert run("tweetqa", [{**rows[0], "Answer": []}])[1] == {"empty Answer list": 1}


# --- NLI --------------------------------------------------------------------------------------
def test_mnli_glue_tsv_gold_label(data):
    dev = read_rows(data / "mnli/dev_matched.tsv")
    records, drops = run("mnli", dev)
    assert not drops and [r["target"] for r in records] == [r["gold_label"] for r in dev]
    assert records[0]["id"] == "63735n"
    assert records[0]["fields"] == {"premise": "The new rights are nice enough",
                                    "hypothesis": "Everyone really likes the newest benefits"}
    train, _ = run("mnli", read_rows(data / "mnli/train.tsv"), split="train")
    assert [r["id"] for r in train] == ["31193n", "101457e", "134793e"]
    assert targets(train) == {"neutral": 1, "entailment": 2}
    assert run("mnli", [{**dev[0], "gold_label": "-"}])[1] == {
        "no gold label ('-': the annotators did not agree)": 1}


def test_mnli_hub_label_ints():
    rows = [{"premise": "p", "hypothesis": f"h{i}", "label": lab, "idx": i}
            for i, lab in enumerate([0, 1, 2, -1, 7])]
    records, drops = run("mnli", rows)
    assert [r["target"] for r in records] == ["entailment", "neutral", "contradiction"]
    assert [r["id"] for r in records] == ["0", "1", "2"]
    assert sum(drops.values()) == 2
    assert any("unlabeled split" in r for r in drops)
    assert any(r.startswith("unknown label") for r in drops)


def test_rte_not_entailment_is_neutral(data):
    rows = read_rows(data / "rte/dev.tsv")
    records, drops = run("rte", rows)
    assert len(records) == 277 and not drops
    assert targets(records) == {"entailment": 146, "neutral": 131}
    assert records[0]["target"] == "neutral" and rows[0]["label"] == "not_entailment"
    assert get_adapter("rte").labels == ("entailment", "neutral")
    hub = [{"sentence1": "a", "sentence2": "b", "label": 0, "idx": 5},
           {"sentence1": "a", "sentence2": "c", "label": 1, "idx": 6}]
    assert [r["target"] for r in run("rte", hub)[0]] == ["entailment", "neutral"]


def test_gpt3nli_hub_rows():
    rows = [{"text_a": "A cat sleeps.", "text_b": "An animal rests.", "label": 0, "guid": 11},
            {"text_a": "A cat sleeps.", "text_b": "A dog barks.", "label": 1, "guid": 12},
            {"text_a": "A cat sleeps.", "text_b": "The cat runs.", "label": 2, "guid": 13},
            {"text_a": "  ", "text_b": "x", "label": 2, "guid": 14}]
    records, drops = run("gpt3nli", rows, split="train")
    assert [(r["id"], r["target"]) for r in records] == [
        ("11", "entailment"), ("12", "neutral"), ("13", "contradiction")]
    assert records[0]["fields"] == {"premise": "A cat sleeps.", "hypothesis": "An animal rests."}
    assert drops == {"empty text_a": 1}


# --- paraphrase -------------------------------------------------------------------------------
def test_paws_crlf(data):
    assert b"\r\n" in (data / "paws/dev.tsv").read_bytes()
    rows = read_rows(data / "paws/dev.tsv")
    assert len(rows) == 300 and list(rows[0]) == ["id", "sentence1", "sentence2", "label"]
    assert not any("\r" in v for r in rows for v in r.values())
    records, drops = run("paws", rows)
    assert not drops and targets(records) == {"no": 169, "yes": 131}
    assert records[1]["target"] == "yes" and rows[1]["label"] == "1"
    train, _ = run("paws", read_rows(data / "paws/train.tsv"))  # no trailing newline
    assert len(train) == 4 and train[-1]["id"] == "4"


def test_qqp_crlf_is_duplicate(data):
    rows = read_rows(data / "qqp/dev.tsv")
    assert len(rows) == 9 and "is_duplicate" in rows[0] and rows[0]["is_duplicate"] == "0"
    records, drops = run("qqp", rows)
    assert not drops and targets(records) == {"no": 5, "yes": 4}
    assert records[0]["id"] == "201359"
    assert records[0]["fields"] == {"sentence1": "Why are African-Americans so beautiful?",
                                    "sentence2": "Why are hispanics so beautiful?"}


def test_qqp_hub_label_and_unlabeled_test():
    rows = [{"question1": "q1", "question2": "q2", "label": 1, "idx": 0},
            {"question1": "q1", "question2": "q3", "label": 0, "idx": 1},
            {"question1": "q1", "question2": "q4", "label": -1, "idx": 2}]
    records, drops = run("qqp", rows)
    assert [r["target"] for r in records] == ["yes", "no"]
    assert drops == {R_UNLABELED_GLUE_PARA: 1}
    assert "QQP/STS-B" in R_UNLABELED_GLUE_PARA and "validation" in R_UNLABELED_GLUE_PARA


def test_stsb_threshold(data):
    rows = read_rows(data / "stsb/dev.tsv")
    records, drops = run("stsb", rows)
    assert len(records) == 300 and not drops
    for row, rec in zip(rows, records, strict=True):
        assert rec["target"] == ("yes" if float(row["score"]) > 3.5 else "no")
    at = [rec for row, rec in zip(rows, records, strict=True) if float(row["score"]) == 3.5]
    assert at and all(r["target"] == "no" for r in at)  # a 3.500 row exists in the sample
    assert targets(records) == {"yes": 86, "no": 214}
    hub = [{"sentence1": "a", "sentence2": "b", "label": v, "idx": i}
           for i, v in enumerate([3.5, 3.51, 5.0, 0.0, -1.0])]
    got, drops = run("stsb", hub)
    assert [r["target"] for r in got] == ["no", "yes", "yes", "no"]
    assert drops == {R_UNLABELED_GLUE_PARA: 1}


# --- instruction tuning -----------------------------------------------------------------------
def test_tulu_messages():
    rows = [
        {"dataset": "oasst", "id": "oasst_1", "messages": [
            {"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]},
        {"dataset": "x", "id": "x_2", "messages": [{"role": "user", "content": "Hi?"}]},
        {"dataset": "x", "id": "x_3", "messages": []},
        {"dataset": "x", "id": "x_4", "messages": [
            {"role": "robot", "content": "?"}, {"role": "assistant", "content": "!"}]},
    ]
    records, drops = run("tulu", rows, split="train")
    assert records == [{"id": "oasst_1", "messages": rows[0]["messages"]}]
    assert drops == {"no non-empty assistant message": 1, "no messages": 1,
                     "unknown message role (expected system/user/assistant)": 1}
    assert get_adapter("tulu").kind == "chat"


# --- multiple choice --------------------------------------------------------------------------
def _check_mc(records):
    for r in records:
        assert set(r) == {"id", "fields", "target", "label"}
        assert r["fields"]["choices"][r["label"]] == r["target"]


def test_arc_official_layout_numeric_keys(data):
    rows = read_rows(data / "arc_challenge/test.jsonl")
    records, drops = run("arc", rows)
    assert len(records) == 300 and not drops
    _check_mc(records)
    assert records[0]["fields"]["question"] == rows[0]["question"]["stem"]
    assert records[0]["label"] == 2  # answerKey C
    numeric = [(row, rec) for row, rec in zip(rows, records, strict=True)
               if row["answerKey"].isdigit()]
    assert len(numeric) == 3
    for row, rec in numeric:
        assert rec["label"] == int(row["answerKey"]) - 1  # labels "1".."4"
    assert {len(r["fields"]["choices"]) for r in records} == {3, 4}


def test_arc_hub_layout_and_parquet(data, tmp_path):
    rows = read_rows(data / "arc_easy/test.json")
    assert isinstance(rows[0]["question"], str) and isinstance(rows[0]["choices"], dict)
    records, drops = run("arc", rows)
    assert len(records) == 300 and not drops
    _check_mc(records)
    assert records[0]["target"] == rows[0]["choices"]["text"][0]
    assert sum(r["answerKey"].isdigit() for r in rows) == 10
    # the same rows as the download step writes them (parquet, nested struct of lists)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "arc.parquet")
    assert run("arc", read_rows(tmp_path / "arc.parquet"))[0] == records


def test_openbookqa(data):
    rows = read_rows(data / "openbookqa/test.jsonl")
    records, drops = run("openbookqa", rows)
    assert len(records) == 300 and not drops
    _check_mc(records)
    assert records[0]["id"] == "8-343" and records[0]["target"] == "quit eating lunch out"
    hub = {"id": "8-343", "question_stem": rows[0]["question"]["stem"],
           "choices": {"text": [c["text"] for c in rows[0]["question"]["choices"]],
                       "label": list("ABCD")}, "answerKey": "B"}
    assert run("openbookqa", [hub])[0] == records[:1]


def test_hellaswag_int_and_string_labels(data):
    rows = read_rows(data / "hellaswag/val.jsonl")
    records, drops = run("hellaswag", rows)
    assert len(records) == 24 and not drops
    _check_mc(records)
    # lm-eval's process_docs: "<activity_label>: <ctx_a> <ctx_b.capitalize()>", preprocessed
    assert records[0]["fields"]["question"] == (
        "Roof shingle removal: A man is sitting on a roof. He")
    assert records[0]["label"] == 3 and records[0]["id"] == "24"
    as_strings = [{**r, "label": str(r["label"])} for r in rows]  # the hub's string labels
    assert run("hellaswag", as_strings)[0] == records
    _, drops = run("hellaswag", [{**rows[0], "label": ""}])
    assert list(drops) == ["missing label (null or empty) - the HellaSwag test split is unlabeled"]
    # without ctx_a / ctx_b (and without an activity label) the row's ctx is the context
    bare = {k: v for k, v in rows[0].items() if k not in ("ctx_a", "ctx_b", "activity_label")}
    assert run("hellaswag", [bare])[0][0]["fields"]["question"] == "A man is sitting on a roof. he"


def test_hellaswag_wikihow_markers_as_lm_eval():
    """lm_eval/tasks/hellaswag/utils.py `preprocess` on WikiHow-style text (the shared sample
    has ActivityNet rows only): " [title]" -> ". ", other [markers] dropped, "  " -> " "."""
    from amuro.data.adapters import hellaswag_preprocess

    assert hellaswag_preprocess(" Wash a dog [title] Fill a tub. [step] Put the dog in. ") == (
        "Wash a dog. Fill a tub. Put the dog in.")
    row = {"ind": 7, "activity_label": "Pets and Animals", "ctx_a": "[header] How to wash a dog",
           "ctx_b": "[title] fill the tub.", "endings": ["[step] Add soap.", " Run away. "],
           "label": "0"}
    [rec], _ = run("hellaswag", [row])
    # capitalize() lowers the rest; "[title] fill" -> ". fill"; an ending loses its leading
    # space before the marker goes, so "[step] Add soap." keeps one (lm-eval scores "  Add soap.")
    assert rec["fields"]["question"] == "Pets and Animals: How to wash a dog. fill the tub."
    assert rec["fields"]["choices"] == [" Add soap.", "Run away."]


def test_boolq_bools(data):
    rows = read_rows(data / "boolq/dev.jsonl")
    assert rows[0]["answer"] is False
    records, drops = run("boolq", rows)
    assert len(records) == 300 and not drops
    _check_mc(records)
    assert targets(records) == {"yes": 188, "no": 112}
    assert records[0]["target"] == "no" and records[0]["label"] == 0
    assert records[0]["fields"]["choices"] == ["no", "yes"]  # lm-eval's doc_to_choice
    # SuperGLUE's passage (what lm-eval reads): "<title> -- <passage>"
    assert records[0]["fields"]["passage"] == "Ethanol fuel -- " + rows[0]["passage"].strip()
    # a SuperGLUE row (title already in the passage, label 0/1) gives the same record
    glue = {"question": rows[0]["question"], "idx": 0, "label": 0,
            "passage": "Ethanol fuel -- " + rows[0]["passage"]}
    assert run("boolq", [glue])[0][0]["fields"] == records[0]["fields"]


def test_sciq_mc_lm_eval_choice_order(data):
    rows = read_rows(data / "sciq/test.json")
    records, drops = run("sciq_mc", rows)
    assert len(records) == 300 and not drops  # empty support is allowed here
    _check_mc(records)
    for row, rec in zip(rows, records, strict=True):  # lm_eval/tasks/sciq/sciq.yaml
        assert rec["fields"]["choices"] == [row["distractor1"], row["distractor2"],
                                            row["distractor3"], row["correct_answer"]]
        assert rec["label"] == 3 and rec["target"] == row["correct_answer"]
        assert rec["fields"]["passage"] == row["support"].lstrip()
    lead = {**rows[0], "support": "\n " + rows[0]["support"] + "\n"}
    assert run("sciq_mc", [lead])[0][0]["fields"]["passage"] == rows[0]["support"] + "\n"


def test_piqa_hub_row_and_labels_file(tmp_path):
    """PIQA (not among the shared samples): a hub-schema row (baber/piqa: goal, sol1, sol2,
    label), and the original valid.jsonl + valid-labels.lst layout."""
    row = {"goal": "To keep a door open,", "sol1": "wedge a doorstop under it.",
           "sol2": "wedge a pillow on top of it.", "label": 0}
    [rec], _ = run("piqa", [row])
    assert rec["fields"] == {"question": "To keep a door open,",
                             "choices": ["wedge a doorstop under it.",
                                         "wedge a pillow on top of it."]}
    assert (rec["label"], rec["target"]) == (0, "wedge a doorstop under it.")
    assert get_adapter("piqa").kind == "multiple_choice"
    unlabeled = {k: v for k, v in row.items() if k != "label"}
    joined = attach_labels([unlabeled], ["1"], data_path="valid.jsonl",
                           labels_path="valid-labels.lst")
    assert run("piqa", joined)[0][0]["label"] == 1
    assert list(run("piqa", [{**row, "label": -1}])[1]) == [R_UNLABELED]


def test_llmbar(data):
    sizes = {"natural": 100, "adversarial_neighbor": 134, "adversarial_gptinst": 92,
             "adversarial_gptout": 47, "adversarial_manual": 46}
    for name, n in sizes.items():
        rows = read_rows(data / f"llmbar/{name}.json")
        records, drops = run("llmbar", rows)
        assert len(records) == n and not drops
        for row, rec in zip(rows, records, strict=True):
            assert rec["target"] == str(row["label"])
            assert rec["fields"]["instruction"] == row["input"].strip()
            assert set(rec["fields"]) == {"instruction", "output_1", "output_2"}
    assert get_adapter("llmbar").labels == ("1", "2")


# --- schema errors ----------------------------------------------------------------------------
def test_wrong_schema_is_an_error_naming_the_field(data):
    paws = read_rows(data / "paws/dev.tsv")
    with pytest.raises(SchemaError) as err:
        get_adapter("mnli").apply(paws[0], index=0)
    assert err.value.field == "gold_label"
    assert "'premise'/'hypothesis' (hub)" in str(err.value)
    assert "adapter 'mnli' reads" in str(err.value)
    qqp = read_rows(data / "qqp/dev.tsv")
    with pytest.raises(SchemaError, match="'premise' \\(hub\\) or 'sentence1' \\(GLUE tsv\\)"):
        get_adapter("mnli").apply(qqp[0], index=0)
    with pytest.raises(SchemaError, match="'label' \\(hub\\) or 'is_duplicate'"):
        get_adapter("qqp").apply({"question1": "a", "question2": "b"}, index=0)


# --- readers ----------------------------------------------------------------------------------
def test_tsv_quote_none_crlf_and_malformed(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_bytes(b'id\tsentence1\tsentence2\tlabel\r\n1\t"Hi," he said\tHello .\t1\r\n'
                     b"2\tonly two\r\n\r\n")
    rows = read_rows(path)
    assert rows[0] == {"id": "1", "sentence1": '"Hi," he said', "sentence2": "Hello .",
                       "label": "1"}
    assert MALFORMED in rows[1]
    records, drops = run("paws", rows)
    assert len(records) == 1 and drops == {
        "malformed line (field count differs from the header)": 1}


def test_reader_formats_and_errors(tmp_path):
    (tmp_path / "a.json").write_text('{"not": "an array"}')
    with pytest.raises(AmuroError, match="expected a JSON array of objects"):
        read_rows(tmp_path / "a.json")
    (tmp_path / "b.txt").write_text('{"a": 1}\n')
    with pytest.raises(AmuroError, match="cannot tell the file format"):
        read_rows(tmp_path / "b.txt")
    assert read_rows(tmp_path / "b.txt", "jsonl") == [{"a": 1}]
    (tmp_path / "c.jsonl").write_text('{"a": 1}\n{bad\n')
    with pytest.raises(AmuroError, match=r"c\.jsonl:2: not valid JSON"):
        read_rows(tmp_path / "c.jsonl")
    with pytest.raises(AmuroError, match="file not found"):
        read_rows(tmp_path / "missing.tsv")
    (tmp_path / "e.json").write_text('{"a": 1}\n{"a": 2}\n')  # datasets' to_json default
    assert read_rows(tmp_path / "e.json") == [{"a": 1}, {"a": 2}]
    (tmp_path / "d.csv").write_text('a,b\n"x\ny",2\n', newline="")
    assert read_rows(tmp_path / "d.csv") == [{"a": "x\ny", "b": "2"}]


def test_input_key_ignores_whitespace_differences():
    a = {"id": "1", "fields": {"premise": "A  cat.", "hypothesis": "x"}, "target": "neutral"}
    b = {"id": "2", "fields": {"premise": "A cat.", "hypothesis": "x"}, "target": "entailment"}
    assert input_key(a) == input_key(b)
    assert json.loads(input_key(a)) == {"premise": "A cat.", "hypothesis": "x"}
