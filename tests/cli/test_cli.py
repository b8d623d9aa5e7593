"""One command-line style (mtlfast.cli): every CLI reports bad input as one line ``<prog>: error: ...`` and exit
2, the sweep folder is ``--out DIR`` everywhere (old spellings still accepted), analyze and reproduce share the CV
flags and their defaults, ``info --help`` prints help, Ctrl-C is exit 130."""

import importlib

import pytest

from mtlfast import cli

CLIS = {
    "sweep": "mtlfast.sweep",
    "analyze": "mtlfast.analyze",
    "predict": "mtlfast.predict",
    "reproduce": "mtlfast.reproduce",
    "stats": "mtlfast.stats.__main__",
    "data": "mtlfast.data.__main__",
    "info": "mtlfast.info",
}


@pytest.mark.parametrize("verb", sorted(CLIS))
def test_bad_flag_is_one_error_line_and_exit_2(verb, capsys):
    module = importlib.import_module(CLIS[verb])
    assert module.PROG == f"python -m mtlfast.{verb}"
    required = {"data": ["stats", "x"], "reproduce": ["--logs", "x"], "stats": ["x"]}.get(verb, [])
    assert module.main([*required, "--no-such-flag"]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"python -m mtlfast.{verb}: error: ") and "--no-such-flag" in lines[0]
    assert "Traceback" not in err and out == ""


@pytest.mark.parametrize("verb", sorted(CLIS))
def test_help_prints_help_and_exits_0(verb, capsys):
    module = importlib.import_module(CLIS[verb])
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m mtlfast.{verb}")


def test_info_help_does_not_collect(monkeypatch, capsys):
    import mtlfast.info as info

    monkeypatch.setattr(info, "collect", lambda: pytest.fail("--help must not probe the machine"))
    with pytest.raises(SystemExit):
        info.main(["--help"])
    assert "--json" in capsys.readouterr().out


def test_interrupt_is_130_and_other_errors_keep_their_traceback(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert cli.run_main("prog", interrupted) == 130
    assert "prog: interrupted" in capsys.readouterr().err

    def bug():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        cli.run_main("prog", bug, (ValueError,))

    def missing():
        open("/no/such/file")

    assert cli.run_main("prog", missing, (OSError,)) == 2
    assert capsys.readouterr().err == "prog: error: /no/such/file: No such file or directory\n"


def test_analyze_and_reproduce_share_the_cv_flags_and_defaults():
    from mtlfast.analyze import build_parser as analyze_parser
    from mtlfast.meta.analysis import MetaSettings
    from mtlfast.reproduce import build_parser as reproduce_parser

    a = cli.cv_settings(analyze_parser().parse_args(["--out", "x"]))
    r = cli.cv_settings(reproduce_parser().parse_args(["--logs", "x"]))
    assert a == r
    assert {k: v for k, v in MetaSettings(**a).items() if k in a} == {
        **{k: MetaSettings.DEFAULTS[k] for k in a}}
    full = ["--full", "--outer-repeats", "3"]
    assert cli.cv_settings(analyze_parser().parse_args(["--out", "x", *full])) == \
        cli.cv_settings(reproduce_parser().parse_args(["--logs", "x", *full]))
    assert cli.cv_settings(analyze_parser().parse_args(["--out", "x", *full]))["outer_repeats"] == 10


@pytest.mark.parametrize("argv, message", [
    (["--folds", "1"], "--folds: expected at least 2"),
    (["--repeats", "0"], "--repeats: expected a positive integer, got 0"),
    (["--outer-repeats", "0"], "--outer-repeats: expected a positive integer"),
    (["--optimistic-repeats", "-1"], "--optimistic-repeats: expected an integer >= 0"),
])
def test_cv_flags_are_checked_alike(argv, message, tmp_path, capsys):
    from mtlfast.analyze import main as analyze_main
    from mtlfast.reproduce import main as reproduce_main

    assert analyze_main(["--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
    assert reproduce_main(["--logs", str(tmp_path), "--out", str(tmp_path / "o"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_analyze_takes_the_sweep_folder_as_out_or_positional(tmp_path, capsys):
    from mtlfast.analyze import main

    (tmp_path / "empty").mkdir()
    for argv in (["--out", str(tmp_path / "empty")], [str(tmp_path / "empty")]):
        assert main([*argv, "--quiet"]) == 2  # an empty folder: no gains.csv
        assert "gains.csv" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "the sweep folder given twice" in capsys.readouterr().err
    assert main(["--quiet"]) == 2
    assert "expected the sweep folder: --out DIR" in capsys.readouterr().err


def test_predict_sweep_folder_is_out_and_old_sweep_flag_still_works(tmp_path, capsys):
    from mtlfast.predict import main

    feats = tmp_path / "new.csv"
    feats.write_text("task,size\nnew,3\n")
    assert main(["--sweep", str(tmp_path / "nosweep"), "--new-task-features", str(feats)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m mtlfast.predict: error: ") and "nosweep" in err
    # the old call `--sweep S --out preds.csv`: --out is now the sweep folder, the CSV is --csv
    assert main(["--sweep", str(tmp_path / "s"), "--out", str(tmp_path / "p.csv"), "--new-task-features",
                 str(feats)]) == 2
    assert "--sweep is the old spelling of --out" in capsys.readouterr().err


def test_data_generate_out_and_positional(tmp_path, capsys):
    from mtlfast.data.__main__ import main

    assert main(["generate", "--out", str(tmp_path / "a"), "--seed", "1"]) == 0
    assert main(["generate", str(tmp_path / "b"), "--seed", "1"]) == 0
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.tsv"))
    assert a and a == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.tsv"))
    assert (tmp_path / "a" / a[0]).read_bytes() == (tmp_path / "b" / a[0]).read_bytes()
    capsys.readouterr()
    assert main(["generate"]) == 2
    assert "expected the folder to write the suite into: --out DIR" in capsys.readouterr().err
