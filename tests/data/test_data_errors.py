"""A corpus of malformed inputs, generated here: each gives the documented error (file + line + what was
expected) from the library, and exit code 2 with a one-line message from ``python -m mtlfast.data``."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtlfast.data import DataError, load_suite, load_task
from mtlfast.data import encode as E
from mtlfast.data import io as IO
from mtlfast.data.__main__ import main

GOOD = b"The\tDT\ncat\tNN\n\nDogs\tNNS\nbark\tVBP\n"
REPO = Path(__file__).resolve().parents[2]


def task_files(**over):
    """A good task whose files can be replaced (bytes) or removed (None)."""
    files = {"train.tsv": GOOD, "dev.tsv": GOOD, "test.tsv": GOOD}
    files.update(over)
    return {k: v for k, v in files.items() if v is not None}


# (id, files of the task folder, file the error must name, line (None: no line), regex of the message)
TSV_CASES = [
    ("three_fields", task_files(**{"train.tsv": b"The\tDT\ncat\tNN\tX\n"}), "train.tsv", 2, r"2 tab-separated fields.*got 3 fields"),
    ("trailing_tab", task_files(**{"train.tsv": b"The\tDT\t\n"}), "train.tsv", 1, r"got 3 fields"),
    ("no_tab", task_files(**{"train.tsv": b"The\tDT\n\ncat NN\n"}), "train.tsv", 3, r"got 1 field: 'cat NN'"),
    ("four_fields_dev", task_files(**{"dev.tsv": b"a\tb\tc\td\n"}), "dev.tsv", 1, r"got 4 fields"),
    ("empty_token", task_files(**{"train.tsv": b"The\tDT\n\tNN\n"}), "train.tsv", 2, r"non-empty token.*got an empty token"),
    ("space_token", task_files(**{"test.tsv": b"The\tDT\n  \tNN\n"}), "test.tsv", 2, r"non-empty token"),
    ("empty_label", task_files(**{"train.tsv": b"The\tDT\ncat\t\n"}), "train.tsv", 2, r"non-empty label.*got an empty label \(token 'cat'\)"),
    ("space_label", task_files(**{"test.tsv": b"The\t \n"}), "test.tsv", 1, r"non-empty label"),
    ("tab_only", task_files(**{"dev.tsv": b"The\tDT\n\t\n"}), "dev.tsv", 2, r"empty token and an empty label"),
    ("missing_train", task_files(**{"train.tsv": None}), "train.tsv", None, r"expected the train split.*got no such file"),
    ("missing_test", task_files(**{"test.tsv": None}), "test.tsv", None, r"expected the test split.*got no such file"),
    ("empty_train", task_files(**{"train.tsv": b""}), "train.tsv", None, r"at least one sentence.*got an empty file"),
    ("blank_lines_only", task_files(**{"test.tsv": b"\n \n\r\n\n"}), "test.tsv", None, r"at least one sentence"),
    ("latin1_byte", task_files(**{"train.tsv": b"The\tDT\n\ncaf\xe9\tNN\n"}), "train.tsv", 3, r"expected UTF-8.*not UTF-8"),
    ("latin1_in_label", task_files(**{"dev.tsv": b"x\tN\xd1\n"}), "dev.tsv", 1, r"expected UTF-8"),
    ("truncated_utf8_at_end", task_files(**{"test.tsv": b"a\tB\n\nb\tC\xe2\x82"}), "test.tsv", 3, r"expected UTF-8"),
    ("utf16_file", task_files(**{"train.tsv": "a\tB\n".encode("utf-16")}), "train.tsv", 1, r"expected UTF-8"),
    ("crlf_then_bad_line", task_files(**{"test.tsv": b"a\tB\r\nb\tC\r\n\r\nc\tD\tE\r\n"}), "test.tsv", 4, r"got 3 fields"),
    ("bad_last_line_no_newline", task_files(**{"train.tsv": b"a\tB\nb"}), "train.tsv", 2, r"got 1 field"),
    ("deep_line", task_files(**{"train.tsv": b"w\tT\n" * 1000 + b"x\tT\tU\n"}), "train.tsv", 1001, r"got 3 fields"),
    ("train_is_folder", task_files(**{"train.tsv": "DIR"}), "train.tsv", None, r"got a directory"),
]


def build(root: Path, files: dict) -> Path:
    task = root / "task"
    task.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if data == "DIR":
            (task / name).mkdir()
        else:
            (task / name).write_bytes(data)
    return task


@pytest.fixture(params=["compiled", "python"])
def parser_kind(request, monkeypatch):
    if request.param == "compiled" and E._fast is None:
        pytest.skip("mtlfast.data._fast not built")
    if request.param == "python":
        monkeypatch.setattr(IO, "_fast", None)
    return request.param


def check_message(msg: str, file: str, line, pattern: str):
    assert file in msg
    if line is None:
        assert " line " not in msg.split(file, 1)[1][:6]
    else:
        assert f"{file} line {line}:" in msg
    assert "expected" in msg and ", got " in msg
    import re

    assert re.search(pattern, msg), msg


@pytest.mark.parametrize("case", TSV_CASES, ids=[c[0] for c in TSV_CASES])
def test_malformed_task_library(case, tmp_path, parser_kind):
    _, files, file, line, pattern = case
    task = build(tmp_path, files)
    with pytest.raises(DataError) as info:
        load_task(task)
    err = info.value
    assert Path(err.path).name == file and err.line == line
    check_message(str(err), file, line, pattern)


@pytest.mark.parametrize("case", TSV_CASES, ids=[c[0] for c in TSV_CASES])
def test_malformed_task_cli(case, tmp_path, capsys):
    _, files, file, line, pattern = case
    task = build(tmp_path, files)
    assert main(["stats", str(task)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m mtlfast.data: error: ")
    assert "Traceback" not in err
    check_message(lines[0], file, line, pattern)


CONLLU_GOOD = (
    "# sent_id = 1\n"
    "1\tDogs\tdog\tNOUN\tNNS\tNumber=Plur\t2\tnsubj\t_\t_\n"
    "2\tbark\tbark\tVERB\tVBP\t_\t0\troot\t_\t_\n\n"
)
COLUMNS_GOOD = "He PRP B-NP\nreckons VBZ B-VP\n\nthe DT B-NP\ndeficit NN I-NP\n"

# convert: (id, {file name: bytes}, extra argv, file named, line, regex)
CONVERT_CASES = [
    ("conllu_nine_fields", {"in.conllu": (CONLLU_GOOD + "1\tx\tx\tX\tX\t_\t0\troot\t_\n").encode()}, ["--format", "conllu"],
     "in.conllu", 5, r"10 tab-separated fields.*got 9 fields"),
    ("conllu_missing_xpos", {"in.conllu": CONLLU_GOOD.replace("VBP", "_").encode()}, ["--format", "conllu", "--column", "xpos"],
     "in.conllu", 3, r"value in column XPOS.*--missing"),
    ("conllu_not_utf8", {"in.conllu": CONLLU_GOOD.encode().replace(b"bark\tbark", b"b\xe4rk\tbark")}, ["--format", "conllu"],
     "in.conllu", 3, r"expected UTF-8"),
    ("conllu_bad_column", {"in.conllu": CONLLU_GOOD.encode()}, ["--format", "conllu", "--column", "nope"],
     "--column", None, r"expected a CoNLL-U field"),
    ("conllu_empty", {"in.conllu": b"# only a comment\n\n"}, ["--format", "conllu"],
     "in.conllu", None, r"at least one CoNLL-U sentence"),
    ("columns_ragged", {"in.txt": (COLUMNS_GOOD + "x NN\n").encode()}, ["--format", "columns"],
     "in.txt", 6, r"expected 3 whitespace-separated columns.*got 2"),
    ("columns_label_out_of_range", {"in.txt": COLUMNS_GOOD.encode()}, ["--format", "columns", "--column", "4"],
     "in.txt", 1, r"label column 4.*got 3 columns"),
    ("columns_bio_check", {"in.txt": (COLUMNS_GOOD + "\nin IN O\nshort JJ I-ADJP\n").encode()},
     ["--format", "columns", "--bio", "check"], "in.txt", 8, r"'I-ADJP' to follow B-ADJP.*after 'O'"),
    ("columns_bio_not_bio", {"in.txt": COLUMNS_GOOD.replace("B-VP", "VP").encode()}, ["--format", "columns", "--bio", "check"],
     "in.txt", 2, r"expected a BIO label.*'VP'"),
    ("input_missing", {}, ["--format", "columns"], "in.txt", None, r"expected an input file.*no such file"),
]


@pytest.mark.parametrize("case", CONVERT_CASES, ids=[c[0] for c in CONVERT_CASES])
def test_malformed_convert_cli(case, tmp_path, capsys):
    _, files, extra, file, line, pattern = case
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    src = tmp_path / (next(iter(files)) if files else "in.txt")
    rc = main(["convert", *extra, "--train", str(src), "--test", str(src), "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    check_message(lines[0], file, line, pattern)


EMB_CASES = [
    ("glove_wrong_dim", b"the 0.1 0.2 0.3\ncat 0.1 0.2\n", 2, r"a word and 3 numbers.*got 2 numbers"),
    ("glove_not_a_number", b"the 0.1 0.2\ncat 0.1 abc\n", 2, r"numbers after the word.*'abc'"),
    ("glove_empty", b"", None, r"got an empty file"),
]


@pytest.mark.parametrize("case", EMB_CASES, ids=[c[0] for c in EMB_CASES])
def test_malformed_embeddings_cli(case, tmp_path, capsys):
    _, data, line, pattern = case
    task = build(tmp_path, task_files())
    (tmp_path / "vec.txt").write_bytes(data)
    assert main(["stats", str(task), "--embeddings", str(tmp_path / "vec.txt")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    check_message(lines[0], "vec.txt", line, pattern)


def test_missing_folder_and_empty_suite(tmp_path, capsys):
    with pytest.raises(DataError, match="no such folder"):
        load_task(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no train/dev/test.tsv"):
        load_suite(tmp_path / "empty")
    assert main(["stats", str(tmp_path / "empty")]) == 2
    assert main(["convert", "--format", "columns"]) == 2  # argparse: required options missing
    err = capsys.readouterr().err
    assert "Traceback" not in err and "the following arguments are required" in err


def test_unseen_labels_warn_but_exit_0(tmp_path, capsys):
    task = build(tmp_path, task_files(**{"test.tsv": b"The\tDT\nweird\tFW\n"}))
    assert main(["stats", str(task)]) == 0
    out, err = capsys.readouterr()
    assert "warning:" in err and "test.tsv" in err and "'FW' (1x)" in err and "first at line 2" in err
    assert "scored" in err
    assert "unseen_labels" in out


@pytest.mark.parametrize("case", [TSV_CASES[0], TSV_CASES[13]], ids=lambda c: c[0])
def test_subprocess_exit_code_and_one_line(case, tmp_path):
    """The real command line: exit code 2, one line on stderr, no traceback."""
    _, files, file, line, pattern = case
    task = build(tmp_path, files)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "mtlfast.data", "stats", str(task)], capture_output=True,
                          text=True, env=env, cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    check_message(lines[0], file, line, pattern)
