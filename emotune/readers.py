"""The one reader of the files users hand emotune: dataset files (the fetch stage, emotune/data_registry.py)
and the texts to label (`emotune predict --input FILE` or stdin, emotune/predict.py).

Formats, chosen by the file's extension unless the caller declares one (`format:` of a dataset entry,
`--format` of predict):

    .csv          csv    comma-separated, a header line, csv-module quoting ("a, b" and "" quotes)
    .tsv          tsv    the same with tabs
    .jsonl .json  jsonl  one JSON object a line (a .json file is read as JSON Lines, not one document)
    .txt          lines  plain text, one text a line; a line's text is the column "text"
    .parquet      parquet  a Parquet table (what `datasets` exports and the Hub serves), read with pyarrow;
                         its "lines" are the 1-based row numbers, and list columns stay lists

`.txt` is plain lines for both callers: a dataset whose .txt files are tables (SemEval E-c's TSV, dair-ai's
semicolon CSV) declares `format: tsv` or `format: csv` in params.yaml.

Every format comes back the same way, as a `Table`: column names, one {column: value} dict per row and the
1-based line of the file each row starts on, so a caller's message can name the line an editor shows.
Bytes are decoded by `decode` alone, so a Latin-1, UTF-16, zipped or binary file gets the same message (file,
line where it can, and the fix) whichever command read it.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from emotune.errors import EmotuneError

FORMATS = ("csv", "tsv", "jsonl", "lines", "parquet")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".txt": "lines",
              ".parquet": "parquet"}
DELIMITERS = {"csv": ",", "tsv": "\t"}
DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
LINES_COLUMN = "text"  # the one column of a plain-lines file

# What a file that is not text usually is, by its first bytes: the fix is different for each.
MAGIC = [(b"PK\x03\x04", "a ZIP archive (or an .xlsx/.docx, which are ZIP files)",
          "unzip it, or save the sheet as CSV (UTF-8)"),
         (b"\x1f\x8b", "gzip-compressed", "decompress it first (`gunzip`)"),
         (b"BZh", "bzip2-compressed", "decompress it first (`bunzip2`)"),
         (b"\xfd7zXZ\x00", "xz-compressed", "decompress it first (`unxz`)"),
         (b"PAR1", "a Parquet file", "read it as Parquet: give it the .parquet extension, or declare the format "
                                     "parquet"),
         (b"\xd0\xcf\x11\xe0", "an old Excel/Word file (OLE2)", "save the sheet as CSV (UTF-8)"),
         (b"%PDF", "a PDF", "export the table as CSV (UTF-8)"),
         (b"SQLite format 3\x00", "an SQLite database", "export the table as CSV (`sqlite3 -csv`)")]
# UTF-32 before UTF-16: the UTF-32-LE mark starts with the UTF-16-LE one. The UTF-8 mark is no problem:
# decode drops it (Excel's "CSV UTF-8" writes one).
BOMS = [(b"\xff\xfe\x00\x00", "UTF-32-LE"), (b"\x00\x00\xfe\xff", "UTF-32-BE"),
        (b"\xff\xfe", "UTF-16-LE"), (b"\xfe\xff", "UTF-16-BE")]


@dataclass
class Table:
    columns: list[str]
    rows: list[dict]  # {column: value}; csv/tsv/lines values are strings, JSONL values as parsed
    lines: list[int]  # the 1-based line of the file each row starts on


# ---------------------------------------------------------------------------------------------
# Format
# ---------------------------------------------------------------------------------------------
def file_format(path: Path, declared: str | None, how_to_declare: str) -> str:
    """The declared format, else the one of the extension. `how_to_declare` is the caller's fix for an
    unknown extension (predict: "pass --format ...", fetch: "set format: ... in dataset_registry.<name>")."""
    if declared:
        return declared
    if path.suffix.lower() not in EXTENSIONS:
        raise EmotuneError(f"{path}: cannot tell the format from the extension {path.suffix!r}; {how_to_declare}")
    return EXTENSIONS[path.suffix.lower()]


# ---------------------------------------------------------------------------------------------
# Bytes to text
# ---------------------------------------------------------------------------------------------
def sniff_not_utf8_text(data: bytes) -> str | None:
    """What the file is when it is not UTF-8 text (with the fix), or None when it may well be."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return (f"is {encoding} text (it starts with a {encoding} byte-order mark). Re-save it as UTF-8 "
                    f"(e.g. `iconv -f {encoding} -t UTF-8`, or \"UTF-8\" in the editor's save dialog).")
    for magic, what, fix in MAGIC:
        if data.startswith(magic):
            return f"is {what}, not a text file: {fix}."
    head = data[:4096]
    if head.count(b"\x00") > len(head) // 8:
        # UTF-16 without a byte-order mark: every other byte of ASCII text is NUL.
        even, odd = head[0::2].count(b"\x00"), head[1::2].count(b"\x00")
        if max(even, odd) > 0.4 * (len(head) // 2) and min(even, odd) < 0.05 * (len(head) // 2):
            encoding = "UTF-16-BE" if even > odd else "UTF-16-LE"
            return (f"looks like {encoding} text without a byte-order mark (every other byte is 0). Re-save "
                    f"it as UTF-8 (e.g. `iconv -f {encoding} -t UTF-8`).")
    control = sum(1 for b in head if b < 32 and b not in b"\t\n\r\f")
    if head.count(b"\x00") > len(head) // 8 or control > len(head) // 20:
        # Text holds no control characters beyond tab and line breaks; 5% of them is no text file.
        return "is a binary file, not text: give the CSV, TSV, JSONL or plain-text file instead."
    return None


# C1 control characters (U+0080-U+009F): no text holds them. They are what Windows-1252's curly quotes,
# dashes and euro sign (bytes 0x80-0x9F: ’ “ ” – … €) become when the file is decoded as Latin-1, e.g. by
# `iconv -f latin1`; SemEval-2018 E-c's own train file has one (U+0092 for ’, line 5733).
C1_CONTROLS = re.compile("[\u0080-\u009f]")


def shown_lines(lines: list[int]) -> str:
    """At most ten line numbers, then how many more."""
    return ", ".join(map(str, lines[:10])) + (f" and {len(lines) - 10} more" if len(lines) > 10 else "")


def c1_control_lines(text: str) -> list[int]:
    """The lines of `text` that hold a C1 control character."""
    return [n for n, line in enumerate(text.split("\n"), 1) if C1_CONTROLS.search(line)]


def not_utf8_message(data: bytes, start: int) -> str:
    """Why byte `start` of `data` is not UTF-8, with the iconv line that re-saves the file. Windows-1252 when
    the file holds its bytes 0x80-0x9F (‘ ’ “ ” – … €: what Windows editors and Excel write), which Latin-1
    would turn into control characters; else Latin-1, which reads every other byte as Windows-1252 does."""
    byte = data[start]
    try:
        cp1252 = any(0x80 <= b <= 0x9F for b in data) and bool(data.decode("cp1252"))
    except UnicodeDecodeError:  # 0x81, 0x8d, 0x8f, 0x90, 0x9d mean nothing in Windows-1252
        cp1252 = False
    if not cp1252:
        return (f"byte 0x{byte:02x} is not UTF-8. Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8` "
                f"if it came from a Western-European Windows or Excel export).")
    return (f"byte 0x{byte:02x} is not UTF-8; the file looks like Windows-1252 (cp1252, where 0x{byte:02x} is "
            f"{bytes([byte]).decode('cp1252')!r}), what Windows editors and Excel write. Re-save it as UTF-8: "
            f"`iconv -f cp1252 -t utf-8 < in > out` (not `-f latin1`, which turns ’ “ ” into control "
            f"characters).")


def decode(data: bytes, source: str, allow_c1_controls: bool = False) -> str:
    """UTF-8 text of `data` (a UTF-8 byte-order mark dropped); anything else stops with what the bytes are
    and how to re-save them. `source` names the file (or "stdin") in the message. NUL bytes and C1 control
    characters stop it too; `allow_c1_controls` keeps the latter (a published release read as published)."""
    not_text = sniff_not_utf8_text(data)
    if not_text:
        raise EmotuneError(f"{source}: {not_text}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EmotuneError(f"{source}: line {line}: {not_utf8_message(data, exc.start)}") from None
    if "\x00" in text:
        lines = [n for n, line in enumerate(text.split("\n"), 1) if "\x00" in line]
        raise EmotuneError(f"{source}: NUL bytes (\\x00) on line(s) {shown_lines(lines)}; text never holds them "
                           f"(a broken export or a binary column pasted in). Remove them (e.g. "
                           f"`tr -d '\\000' < in > out`) or fix the rows.")
    if not allow_c1_controls and C1_CONTROLS.search(text):
        lines = c1_control_lines(text)
        first = C1_CONTROLS.search(text).group()
        raise EmotuneError(f"{source}: C1 control characters (U+0080-U+009F, e.g. U+{ord(first):04X}) on "
                           f"line(s) {shown_lines(lines)}; text never holds them: they are Windows-1252 characters "
                           f"(’ “ ” – …) decoded as Latin-1 (`iconv -f latin1`). Convert the original file with "
                           f"`iconv -f cp1252 -t utf-8 < in > out`, or fix the rows.")
    return text


def decode_file(path: Path) -> str:
    return decode(path.read_bytes(), str(path))


# ---------------------------------------------------------------------------------------------
# Bytes to rows
# ---------------------------------------------------------------------------------------------
def parquet_table(data: bytes, source: str) -> Table:
    """The rows of a Parquet file as Python values (list columns stay lists), numbered from 1."""
    import pyarrow
    import pyarrow.parquet

    try:
        table = pyarrow.parquet.read_table(pyarrow.BufferReader(data))
    except (pyarrow.ArrowException, OSError) as exc:
        raise EmotuneError(f"{source}: not a readable Parquet file ({exc}); export it again, or give the "
                           f"CSV, TSV or JSONL file") from None
    rows = table.to_pylist()
    return Table(list(table.schema.names), rows, list(range(1, len(rows) + 1)))


def read_rows(data: bytes, fmt: str, source: str, **parse_options) -> Table:
    """The rows of a file's bytes in format `fmt`: Parquet directly, every other format decoded, then parsed."""
    if fmt == "parquet":
        return parquet_table(data, source)
    return parse(decode(data, source), fmt, source, **parse_options)


# ---------------------------------------------------------------------------------------------
# Text to rows
# ---------------------------------------------------------------------------------------------
def parse(text: str, fmt: str, source: str, *, delimiter: str | None = None, quoting: str = "minimal",
          names: list[str] | None = None, wanted: tuple[str, ...] = (), keep_blank_lines: bool = False,
          how_to_declare: str = "") -> Table:
    """The rows of a decoded file.

    csv/tsv: the first line is the header unless `names` gives the columns (a file without a header line);
    `wanted` are the columns the caller reads, so a one-column header without them that holds another
    delimiter is reported as that (a `;` file read as CSV), not as an unknown column. lines: blank lines
    are skipped unless `keep_blank_lines` (a file aligned line by line with another, where every line
    counts). `how_to_declare` ends a message about the layout: the caller's way to pick the format or
    delimiter (they differ: predict has --format, a dataset has format: and delimiter: in params.yaml)."""
    if fmt == "lines":
        return plain_lines(text, keep_blank_lines)
    if fmt == "jsonl":
        return jsonl_table(text, source)
    if fmt not in DELIMITERS:
        raise ValueError(f"unknown format {fmt!r}; formats are {FORMATS}")
    return delimited_table(text, source, delimiter or DELIMITERS[fmt], quoting, names, wanted, how_to_declare)


def split_lines(text: str) -> list[str]:
    """The lines of `text` as an editor numbers them: split at "\\n" only (str.splitlines would also split a
    text at U+2028 or \\x1c, which a tweet may hold), a CRLF file's "\\r" dropped, no empty last line."""
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def plain_lines(text: str, keep_blank_lines: bool = False) -> Table:
    pairs = [(n, line) for n, line in enumerate(split_lines(text), 1) if keep_blank_lines or line.strip()]
    return Table([LINES_COLUMN], [{LINES_COLUMN: line} for _, line in pairs], [n for n, _ in pairs])


def jsonl_table(text: str, source: str) -> Table:
    """One JSON object a line; blank lines are skipped. Columns: every key, in order of first appearance."""
    rows, lines = [], []
    for number, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EmotuneError(f"{source}: line {number}: not valid JSON ({exc.msg}); each line "
                               f"must be one JSON object") from None
        if not isinstance(row, dict):
            raise EmotuneError(f"{source}: line {number}: expected a JSON object, got {row!r:.60}")
        rows.append(row)
        lines.append(number)
    return Table(list(dict.fromkeys(key for row in rows for key in row)), rows, lines)


def delimited_table(text: str, source: str, delimiter: str, quoting: str, names: list[str] | None,
                    wanted: tuple[str, ...], how_to_declare: str) -> Table:
    rows, lines = csv_rows(text, source, delimiter, quoting)
    first = lines[0] if lines else 1  # the header's line: blank lines may come before it
    if names is None:
        header, rows, lines = (rows[0], rows[1:], lines[1:]) if rows else ([], [], [])
    else:
        header = list(names)
    guess = other_delimiter(header, delimiter) if not set(wanted) <= set(header) else None
    if guess:
        raise EmotuneError(f"{source}: line {first} has one column {header[0]!r:.80} but looks "
                           f"{DELIMITER_NAMES[guess]}-separated (delimiter: {guess!r}); {how_to_declare}")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:  # a dict per row would keep only the last of them
        what = f"line {first}: the header" if names is None else "the column names given for it"
        raise EmotuneError(f"{source}: {what} names column(s) {', '.join(map(repr, repeated))} more than once; "
                           f"give every column its own name")
    for row, line in zip(rows, lines):
        if len(row) != len(header):
            raise EmotuneError(f"{source}: line {line}: {len(row)} fields, expected {len(header)} "
                               f"({', '.join(header)}); check the delimiter {delimiter!r} and the quoting of "
                               f"that line" + (f", or {how_to_declare}" if how_to_declare else ""))
    return Table(header, [dict(zip(header, row)) for row in rows], lines)


def csv_rows(text: str, source: str, delimiter: str, quoting: str) -> tuple[list[list[str]], list[int]]:
    """The csv module's rows and the physical line each starts on (a quoted text may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter,
                        quoting=csv.QUOTE_NONE if quoting == "none" else csv.QUOTE_MINIMAL)
    rows, lines, start = [], [], 1
    # csv's default field limit (131072 characters) rejects valid long texts (the tokenizer truncates
    # them later); no field can be longer than the file, so that bound never rejects one and caps nothing
    # the file does not already hold in memory.
    previous_limit = csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    try:
        for row in reader:
            if row:  # blank lines carry no row
                rows.append(row)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise EmotuneError(f"{source}: line {reader.line_num}: {exc}") from None
    finally:
        csv.field_size_limit(previous_limit)
    return rows, lines


def other_delimiter(header: list[str], delimiter: str) -> str | None:
    """The usual delimiter a one-column header holds (`text;label` read as CSV: ";"), or None."""
    if len(header) != 1:
        return None
    return next((d for d in DELIMITER_NAMES if d != delimiter and d in header[0]), None)
