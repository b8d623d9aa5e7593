"""Converters on small CoNLL-U and CoNLL-2000 snippets written here, checked against hand-written results."""

from pathlib import Path

from mtlfast.data import load_task
from mtlfast.data.__main__ import main
from mtlfast.data.convert import Sentences, apply_bio, bio_problems, read_columns, read_conllu

CONLLU = """# newdoc id = doc1
# sent_id = 1
# text = Don't go home.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\tMood=Imp|VerbForm=Fin\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\tVerbForm=Inf\t0\troot\t_\t_
3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t3:conj\t_
4\thome\thome\tADV\tNN\t_\t3\tadvmod\t_\tSpaceAfter=No
5\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = 2
1\tNew York\tNew York\tPROPN\tNNP\tNumber=Sing\t0\troot\t_\t_

"""

# CoNLL-2000 style: word POS chunk
CONLL2000 = """Confidence NN B-NP
in IN B-PP
the DT B-NP
pound NN I-NP
is VBZ B-VP
widely RB I-VP

Chancellor NNP O
of IN B-PP
the DT B-NP
Exchequer NNP I-NP
"""


def test_conllu_columns_by_name_and_number(tmp_path):
    src = tmp_path / "a.conllu"
    src.write_text(CONLLU, encoding="utf-8")
    upos = read_conllu(src, "upos")
    # multiword range 1-2 and empty node 3.1 skipped; the space in "New York" becomes "_"
    assert upos.tokens == [["Do", "n't", "go", "home", "."], ["New_York"]]
    assert upos.tags == [["AUX", "PART", "VERB", "ADV", "PUNCT"], ["PROPN"]]
    assert upos.lines == [[5, 6, 7, 9, 10], [13]]
    assert read_conllu(src, "xpos").tags == [["VBP", "RB", "VB", "NN", "."], ["NNP"]]
    assert read_conllu(src, 5).tags == read_conllu(src, "XPOS").tags
    assert read_conllu(src, "deprel").tags[0] == ["aux", "advmod", "root", "advmod", "punct"]
    assert read_conllu(src, "lemma").tags[1] == ["New_York"]
    with_missing = read_conllu(src, "feats", missing="NONE")
    assert with_missing.tags[0] == ["Mood=Imp|VerbForm=Fin", "NONE", "VerbForm=Inf", "NONE", "NONE"]


def test_conllu_crlf_same_result(tmp_path):
    a, b = tmp_path / "a.conllu", tmp_path / "b.conllu"
    a.write_bytes(CONLLU.encode())
    b.write_bytes(CONLLU.replace("\n", "\r\n").encode())
    ra, rb = read_conllu(a, "upos"), read_conllu(b, "upos")
    assert (ra.tokens, ra.tags, ra.lines) == (rb.tokens, rb.tags, rb.lines)


def test_columns_choose_columns(tmp_path):
    src = tmp_path / "train.txt"
    src.write_text("-DOCSTART- -X- O\n\n" + CONLL2000, encoding="utf-8")
    chunks = read_columns(src)  # label = last column
    assert chunks.tokens == [["Confidence", "in", "the", "pound", "is", "widely"], ["Chancellor", "of", "the", "Exchequer"]]
    assert chunks.tags[1] == ["O", "B-PP", "B-NP", "I-NP"]
    assert chunks.lines[1] == [10, 11, 12, 13]
    pos = read_columns(src, label_column=2)
    assert pos.tags[0] == ["NN", "IN", "DT", "NN", "VBZ", "RB"]
    assert read_columns(src, token_column=2, label_column=-3).tokens[0][0] == "NN"


def test_bio_check_and_repair():
    assert bio_problems(["O", "I-NP", "I-NP", "B-VP", "I-NP", "I-VP"]) == [1, 4, 5]
    assert bio_problems(["B-NP", "I-NP", "O", "B-VP", "I-VP"]) == []
    s = Sentences(Path("x"), tokens=[list("abcdef")], tags=[["O", "I-NP", "I-NP", "B-VP", "I-NP", "I-VP"]],
                  lines=[[1, 2, 3, 4, 5, 6]])
    assert apply_bio(s, "repair") == 3
    assert s.tags[0] == ["O", "B-NP", "I-NP", "B-VP", "B-NP", "B-VP"]  # I-VP after I-NP starts a new VP
    assert bio_problems(s.tags[0]) == []
    # IOB1 -> IOB2
    iob1 = Sentences(Path("x"), tokens=[list("abc")], tags=[["I-PER", "I-PER", "I-LOC"]], lines=[[1, 2, 3]])
    assert apply_bio(iob1, "repair") == 2 and iob1.tags[0] == ["B-PER", "I-PER", "B-LOC"]


def test_convert_task_end_to_end(tmp_path, capsys):
    train, test = tmp_path / "train.conllu", tmp_path / "test.conllu"
    train.write_text(CONLLU, encoding="utf-8")
    test.write_text(CONLLU.split("\n\n# sent_id = 2")[0] + "\n\n", encoding="utf-8")
    rc = main(["convert", "--format", "conllu", "--column", "xpos", "--train", str(train), "--dev", str(test),
               "--test", str(test), "--out", str(tmp_path / "pos")])
    assert rc == 0
    assert "train 2 sentences / 6 tokens" in capsys.readouterr().out
    task = load_task(tmp_path / "pos")
    assert task.train.tokens == [["Do", "n't", "go", "home", "."], ["New_York"]]
    assert task.test.tags == [["VBP", "RB", "VB", "NN", "."]]
    assert (tmp_path / "pos" / "train.tsv").read_text(encoding="utf-8").startswith("Do\tVBP\nn't\tRB\n")
    assert (tmp_path / "pos" / "labels.txt").read_text().split() == [".", "NN", "NNP", "RB", "VB", "VBP"]


def test_convert_columns_with_repair_cli(tmp_path, capsys):
    src = tmp_path / "train.txt"
    src.write_text(CONLL2000.replace("Chancellor NNP O\nof IN B-PP", "Chancellor NNP O\nof IN I-PP"))
    out = tmp_path / "chu"
    assert main(["convert", "--format", "columns", "--bio", "check", "--train", str(src), "--test", str(src),
                 "--out", str(out)]) == 2
    assert "train.txt line 9:" in capsys.readouterr().err
    assert main(["convert", "--format", "columns", "--bio", "repair", "--train", str(src), "--test", str(src),
                 "--out", str(out)]) == 0
    assert "2 BIO label(s) repaired" in capsys.readouterr().out  # once in train, once in test
    task = load_task(out)
    assert task.train.tags[1] == ["O", "B-PP", "B-NP", "I-NP"]
    assert task.dev is None and task.is_bio


def test_generate_and_stats_cli(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "s"), "--seed", "3"]) == 0
    capsys.readouterr()
    assert main(["stats", str(tmp_path / "s"), "--csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0].startswith("task,split,sentences,tokens,types,labels")
    assert len(rows) == 1 + 7 * 3
    fine_train = next(r for r in rows if r.startswith("fine,train,"))
    assert fine_train.split(",")[2] == "1500" and fine_train.split(",")[5] == "22"
    assert main(["stats", str(tmp_path / "s" / "keep" / "dev.tsv")]) == 0
    assert "150" in capsys.readouterr().out
