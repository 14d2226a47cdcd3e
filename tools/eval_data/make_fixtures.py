#!/usr/bin/python3
"""Writes the small JSONL/CSV dataset fixtures and what pandas + the study's cleaning rule read from them.

Output (tests/fixtures/eval-data/):
  newsgroups_sample.jsonl   20-Newsgroups-like rows: a null text, an integer label, a missing key, a blank line
  samsum_sample.csv         Samsum-like rows: CRLF, quoted multi-line dialogues, doubled quotes, an empty field
  pandas_expected.json      the (input, target) pairs pandas reads after the study's rule
                            "drop rows whose text or label is not a string", and the number dropped

No Python Parquet writer is installable here (Debian 12 has no python3-pyarrow or fastparquet), so the
Parquet fixture is written by Parquet.Net in the C# tests and checked value by value.

Run: apt-get install -y python3-pandas && /usr/bin/python3 tools/eval_data/make_fixtures.py
"""
import json
import os

import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "fixtures", "eval-data"))

JSONL_ROWS = [
    {"text": "The shuttle launch was delayed.", "label": "sci.space"},
    {"text": None, "label": "rec.autos"},
    {"text": "My V8 needs a new gasket.", "label": "rec.autos"},
    None,  # a blank line
    {"text": "Is there a god?", "label": 3},
    {"label": "sci.med"},
    {"text": "\u00dcn\u00efc\u00f6d\u00e9 and \"quotes\" and a\nnewline", "label": "alt.atheism", "extra": [1, 2]},
    {"text": "", "label": "sci.space"},
]

CSV_TEXT = (
    "id,dialogue,summary\r\n"
    "1,\"Amanda: I baked cookies. Do you want some?\r\nJerry: Sure!\r\nAmanda: I'll bring you tomorrow :-)\","
    "Amanda baked cookies and will bring Jerry some tomorrow.\r\n"
    "2,\"Olivia: Who are you voting for?\r\nOlivier: \"\"Liberals\"\", as always.\",Olivia and Olivier are voting for liberals.\r\n"
    "3,,Nobody said anything.\r\n"
    "4,\"Tim: hi, all\",Tim greets everyone.\r\n"
)


def write(name, data):
    path = os.path.join(OUT, name)
    with open(path + ".tmp", "w", encoding="utf-8", newline="") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
    return path


def study_rule(df, text_col, label_col):
    keep = df[text_col].apply(lambda x: isinstance(x, str)) & df[label_col].apply(lambda x: isinstance(x, str))
    return df[keep], int((~keep).sum())


def main():
    lines = ["" if r is None else json.dumps(r, ensure_ascii=False) for r in JSONL_ROWS]
    jsonl = write("newsgroups_sample.jsonl", "\n".join(lines) + "\n")
    csv = write("samsum_sample.csv", CSV_TEXT)

    # pandas' JSON reader would turn the integer label into a float column; read the objects as the
    # HF datasets -> pandas path sees them (object dtype, None for a missing key).
    records = [json.loads(l) for l in lines if l.strip()]
    jdf = pd.DataFrame.from_records(records, columns=["text", "label"]).astype(object)
    jdf = jdf.where(pd.notnull(jdf), None)
    jkept, jdropped = study_rule(jdf, "text", "label")

    cdf = pd.read_csv(csv, dtype=object)  # empty fields become NaN, as in the study's pandas frames
    ckept, cdropped = study_rule(cdf, "dialogue", "summary")

    doc = {
        "generator": "tools/eval_data/make_fixtures.py",
        "pandas": pd.__version__,
        "newsgroups_sample.jsonl": {"kept": [[r.text, r.label] for r in jkept.itertuples()], "dropped": jdropped},
        "samsum_sample.csv": {"kept": [[r.dialogue, r.summary] for r in ckept.itertuples()], "dropped": cdropped},
    }
    write("pandas_expected.json", json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    print("wrote", jsonl, csv, "and pandas_expected.json")


if __name__ == "__main__":
    main()
