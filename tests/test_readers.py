"""emotune/readers.py is the one reader of user files: the fetch stage's dataset files and predict's inputs go
through it, so the same bytes give the same rows (and line numbers) and the same error, whichever command
reads them. Each test runs both callers on one file; a caller that went back to a parser of its own fails."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from emotune import predict, readers
from emotune.config import FetchConfig
from emotune.data_registry import fetch_dataset, read_lines, read_table
from emotune.errors import EmotuneError

GOOD_CSV = "text,label\nhello,joy\n"


def fetch_spec(make_spec, path: Path, **entry):
    test = path.parent / f"good{path.suffix if path.suffix in ('.csv', '.tsv') else '.csv'}"
    test.write_text(GOOD_CSV if test.suffix == ".csv" else GOOD_CSV.replace(",", "\t"))
    return make_spec(files={"train": str(path), "test": str(test)}, label_column="label", **entry)


def fetch_rows(make_spec, path: Path, **entry) -> tuple[list[str], list[int]]:
    """The texts of `path` and their lines, as the fetch stage reads a dataset file."""
    table, lines = read_table(fetch_spec(make_spec, path, **entry), path, "dataset_registry.toy.files.train")
    return list(table["text"]), lines


def predict_rows(path: Path) -> tuple[list[str], list[int]]:
    inputs = predict.read_inputs(None, path, None)
    return inputs.texts, inputs.rows


def fetch_error(make_spec, path: Path, **entry) -> str:
    with pytest.raises(EmotuneError) as info:
        fetch_dataset(fetch_spec(make_spec, path, **entry), FetchConfig(), 42)
    return str(info.value)


def predict_error(path: Path) -> str:
    with pytest.raises(EmotuneError) as info:
        predict.read_inputs(None, path, None)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# The same bytes, the same rows
# ---------------------------------------------------------------------------------------------
CSV = ('\ufefftext,label\r\n'  # Excel's "CSV UTF-8": a byte-order mark and CRLF line ends
       '"Hello, world",joy\r\n'
       '\r\n'  # a blank line carries no row, but counts for the line numbers
       '"two\r\nlines, quoted",anger\r\n'
       'she said ""hi"",sadness\r\n'
       '"she said ""hi""",sadness\r\n')
TABLES = {
    "in.csv": CSV,
    "in.tsv": "text\tlabel\nHello, world\tjoy\n\n\"tab\there\"\tanger\n",
    "in.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n\n" for r in
                        [{"text": "Hello, world", "label": "joy"}, {"text": "a\u2028b", "label": "anger"}]),
}


@pytest.mark.parametrize("name", TABLES)
def test_fetch_and_predict_read_the_same_rows_from_the_same_bytes(tmp_path, make_spec, name):
    path = tmp_path / name
    path.write_bytes(TABLES[name].encode())
    texts, lines = fetch_rows(make_spec, path)
    assert (texts, lines) == predict_rows(path)
    assert "Hello, world" in texts and "text" not in texts  # the header, byte-order mark and all, is no row


def test_the_csv_rows_and_their_physical_lines():
    table = readers.parse(CSV.lstrip("\ufeff"), "csv", "in.csv")
    assert table.columns == ["text", "label"]
    assert [r["text"] for r in table.rows] == ["Hello, world", "two\r\nlines, quoted", 'she said ""hi""',
                                               'she said "hi"']
    assert table.lines == [2, 4, 6, 7]


def test_a_u2028_in_a_text_never_splits_it(tmp_path, make_spec):
    """str.splitlines() splits at U+2028 (and \\x1c, \\x85); a tweet holding one is still one text a line."""
    path = tmp_path / "in.txt"
    path.write_text("one\u2028still one\ntwo\n", encoding="utf-8")
    assert predict_rows(path) == (["one\u2028still one", "two"], [1, 2])
    labels = tmp_path / "labels.txt"
    labels.write_text("0\n1\n")
    files = {split: {"text": str(path), "labels": str(labels)} for split in ("train", "test")}
    spec = make_spec(format="lines", label_ids=True, files=files)
    frame = read_lines(spec, path, labels, "train").frame
    assert list(frame["text"]) == ["one\u2028still one", "two"]


def test_txt_means_plain_lines_for_both(tmp_path, make_spec):
    """One extension table: .txt is one text a line. predict reads it so; for a dataset a file of texts alone
    has no labels, so the fetch says to declare the table format or give a second file of labels."""
    path = tmp_path / "in.txt"
    path.write_text("text\tlabel\nhello\tjoy\n")
    assert predict_rows(path) == (["text\tlabel", "hello\tjoy"], [1, 2])
    message = fetch_error(make_spec, path)
    for part in ("in.txt", "format lines", "has no labels", "set format: csv | tsv | jsonl in dataset_registry.toy",
                 "{text: ..., labels: ...}"):
        assert part in message, f"{part!r} missing from: {message}"
    assert fetch_rows(make_spec, path, format="tsv") == (["hello"], [2])  # declared, it is a table
    assert predict.read_inputs(None, path, None, "tsv").texts == ["hello"]


def test_stdin_is_read_like_a_file(tmp_path):
    import io

    path = tmp_path / "in.csv"
    path.write_bytes(CSV.encode())
    from_stdin = predict.read_inputs(None, None, io.BytesIO(CSV.encode()), "csv")
    assert (from_stdin.texts, from_stdin.rows) == predict_rows(path)


def test_both_callers_go_through_the_reader(tmp_path, make_spec, monkeypatch):
    """Not a copy of it: both call readers.decode and readers.parse."""
    calls = []
    for name in ("decode", "parse"):
        original = getattr(readers, name)
        monkeypatch.setattr(readers, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    path = tmp_path / "in.csv"
    path.write_text(GOOD_CSV)
    fetch_rows(make_spec, path)
    assert calls == ["decode", "parse"]
    predict_rows(path)
    assert calls == ["decode", "parse"] * 2


# ---------------------------------------------------------------------------------------------
# The same bytes, the same error: file, line where there is one, the fix
# ---------------------------------------------------------------------------------------------
UNREADABLE = [
    # file name, bytes, message parts
    ("latin1.csv", "text,label\nhello,joy\ncafé,anger\n".encode("latin-1"),
     ["latin1.csv: line 3: byte 0xe9 is not UTF-8", "iconv -f latin1 -t utf-8"]),
    ("sheet.csv", b"PK\x03\x04\x14\x00\x06\x00" + bytes(200),
     ["sheet.csv: is a ZIP archive (or an .xlsx/.docx", "save the sheet as CSV"]),
    ("utf16.csv", GOOD_CSV.encode("utf-16"),
     ["utf16.csv: is UTF-16-LE text", "byte-order mark", "iconv -f UTF-16-LE -t UTF-8"]),
    ("nul.jsonl", b'{"text": "a", "label": "joy"}\n{"text": "b\x00", "label": "joy"}\n',
     ["nul.jsonl: NUL bytes", "line(s) 2", "Remove them"]),
    ("windows.csv", "text,label\nhello,joy\ncafé “ok”,anger\n".encode("cp1252"),
     ["windows.csv: line 3: byte 0xe9 is not UTF-8", "Windows-1252", "iconv -f cp1252 -t utf-8"]),
    ("latin1_converted.csv", "text,label\nit’s “ok”,anger\n".encode("cp1252").decode("latin-1").encode(),
     ["latin1_converted.csv: C1 control characters", "U+0092", "line(s) 2", "iconv -f cp1252 -t utf-8"]),
]


@pytest.mark.parametrize("name, data, parts", [pytest.param(*case, id=case[0]) for case in UNREADABLE])
def test_bytes_that_are_no_utf8_text_give_one_message_in_both(tmp_path, make_spec, name, data, parts):
    path = tmp_path / name
    path.write_bytes(data)
    message = predict_error(path)
    assert fetch_error(make_spec, path) == message
    for part in parts:
        assert part in message, f"{part!r} missing from: {message}"


def test_an_xlsx_given_as_csv_is_named_as_a_sheet_not_a_format(tmp_path, make_spec):
    """By extension .xlsx has no format (each caller says how to declare one); declared, the bytes tell."""
    path = tmp_path / "sheet.xlsx"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    assert "sheet.xlsx: cannot tell the format from the extension '.xlsx'; pass --format" in predict_error(path)
    assert ("sheet.xlsx: cannot tell the format from the extension '.xlsx'; set format: csv | tsv | jsonl | parquet in "
            "dataset_registry.toy") in fetch_error(make_spec, path)
    with pytest.raises(EmotuneError, match=r"sheet.xlsx: is a ZIP archive .*save the sheet as CSV"):
        predict.read_inputs(None, path, None, "csv")
    assert "sheet.xlsx: is a ZIP archive" in fetch_error(make_spec, path, format="csv")


LAYOUT = [
    ("ragged.csv", "text,label\nhello,joy\nhi,there,anger\n",
     "line 3: 3 fields, expected 2 (text, label); check the delimiter ',' and the quoting of that line"),
    ("quote.csv", 'text,label\nhello,joy\n"never closed,joy\n',
     "line 3: 1 fields, expected 2 (text, label)"),  # the csv module reads the rest as one field
    ("bad.jsonl", '{"text": "a", "label": "joy"}\n\n{"text": "b", label}\n',
     "line 3: not valid JSON (Expecting property name enclosed in double quotes); each line must be "
     "one JSON object"),
    ("list.jsonl", '{"text": "a", "label": "joy"}\n["b", "joy"]\n',
     "line 2: expected a JSON object, got ['b', 'joy']"),
    ("semicolons.csv", "text;label\nhello, you;joy\n",
     "line 1 has one column 'text;label' but looks semicolon-separated (delimiter: ';'); "),
    ("twice.csv", "text,text\nhello,joy\n",
     "line 1: the header names column(s) 'text' more than once"),
]


@pytest.mark.parametrize("name, content, common", [pytest.param(*case, id=case[0]) for case in LAYOUT])
def test_a_row_that_does_not_parse_gives_the_same_message_in_both(tmp_path, make_spec, name, content, common):
    """Same file, line and problem; only the way to declare another format or delimiter is the caller's."""
    path = tmp_path / name
    path.write_text(content)
    from_predict, from_fetch = predict_error(path), fetch_error(make_spec, path)
    assert from_predict.startswith(f"{path}: {common}"), from_predict
    assert from_fetch.startswith(f"{path}: {common}"), from_fetch
    if "delimiter" in common:
        assert "pass --format" in from_predict and "dataset_registry.toy" in from_fetch


def test_fetch_and_predict_read_the_same_parquet_rows(tmp_path, make_spec):
    import pandas as pd

    path = tmp_path / "in.parquet"
    pd.DataFrame({"text": ["Hello, world", "two\nlines"], "label": ["joy", "anger"]}).to_parquet(path)
    assert predict_rows(path) == (["Hello, world", "two\nlines"], [1, 2])
    assert fetch_rows(make_spec, path)[0] == ["Hello, world", "two\nlines"]
    assert predict.read_inputs(None, path.rename(tmp_path / "in.bin"), None, "parquet").texts == ["Hello, world",
                                                                                                   "two\nlines"]
