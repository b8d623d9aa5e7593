"""Reproduction from the original logs: parsing, gains, curve features, the CLI.

The gains oracle in these tests parses the log lines itself (plain string splitting, no code from
mtlfast.reproduce)."""

import math
import os
from pathlib import Path

import numpy as np
import pytest

from mtlfast.reproduce import LogError, compute_gains, main, parse_log, read_logs, single_curves

FAST = ["--repeats", "3", "--outer-repeats", "1", "--quiet"]


def _write_run(folder, tasks, iters, f1s, loss_tr=None):
    """A run folder: dev lines every 100 iterations per task, train lines every 10."""
    folder.mkdir(parents=True)
    with open(folder / "loss_dv.log", "w") as fh:
        for it in range(100, iters + 1, 100):
            for t in tasks:
                f1 = f1s[t] if it == iters else 0.1
                fh.write(f"Iter {it}, task {t}, loss 1.0, acc 0.5, f1 {f1:.5f}, p 0.5, r 0.5\n")
    with open(folder / "loss_tr.log", "w") as fh:
        for k, it in enumerate(range(10, iters + 1, 10)):
            for t in tasks:
                v = loss_tr(k) if loss_tr else 1.0 / (1 + k)
                fh.write(f"Iter {it}, task {t}, loss {v}\n")


def _fake_logs(root):
    f1_single = {"a": 0.5, "b": 0.8, "c": 0.6}
    for t, f in f1_single.items():
        _write_run(root / t, [t], 500, {t: f}, loss_tr=lambda k, t=t: -0.5 * math.log(0.1 * (k // 10) + 1) + 3)
    pair_f1 = {("a", "b"): {"a": 0.55, "b": 0.76}, ("a", "c"): {"a": 0.45, "c": 0.66}, ("b", "c"): {"b": 0.8, "c": 0.3}}
    for (x, y), f in pair_f1.items():
        _write_run(root / f"{x}_{y}", [x, y], 1000, f)
    return f1_single, pair_f1


def test_parse_and_gains_on_synthetic_logs(tmp_path):
    f1s, pf1 = _fake_logs(tmp_path)
    runs = read_logs(tmp_path)
    assert sorted(runs["single"]) == ["a", "b", "c"] and len(runs["pair"]) == 3
    rows, notes = compute_gains(runs, single_iter=500, pair_iter=1000)
    assert len(rows) == 6 and not notes
    g = {(r["main"], r["aux"]): r["gain"] for r in rows}
    assert g[("a", "b")] == pytest.approx((0.55 / 0.5 - 1) * 100)
    assert g[("b", "a")] == pytest.approx((0.76 / 0.8 - 1) * 100)
    assert g[("c", "b")] == pytest.approx((0.3 / 0.6 - 1) * 100)
    assert g[("b", "c")] == pytest.approx(0.0)


def test_bad_log_line_names_file_and_line(tmp_path):
    p = tmp_path / "loss_dv.log"
    p.write_text("Iter 100, task a, loss 1.0\nthis is not a log line\n")
    with pytest.raises(LogError, match=r"loss_dv.log line 2: expected"):
        parse_log(p)


def test_restart_and_overlong_curves_are_reported_and_optionally_cleaned(tmp_path):
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "loss_dv.log").write_text("Iter 100, task a, loss 1.0, acc 0.5, f1 0.5, p 0.5, r 0.5\n")
    lines = [f"Iter {i}, task a, loss 9.0" for i in (10, 20)] + [f"Iter {i}, task a, loss 1.0" for i in range(10, 110, 10)]
    (folder / "loss_tr.log").write_text("\n".join(lines) + "\n")
    runs = read_logs(tmp_path)
    curves, notes = single_curves(runs, clean=False, single_iter=50)
    assert len(curves["a"][1]) == 12 and any("restarts" in n for n in notes) and any("up to iteration" in n for n in notes)
    clean, _ = single_curves(runs, clean=True, single_iter=50)
    np.testing.assert_array_equal(clean["a"][0], [10, 20, 30, 40, 50])
    assert np.all(clean["a"][1] == 1.0)


def test_cli_on_synthetic_logs(tmp_path, capsys):
    _fake_logs(tmp_path / "logs")
    # 6 pairs (3 gains / 3 no gains): fewer than 5 per class, the analysis adapts the folds instead of failing
    assert main(["--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "out"), "--single-iter", "500",
                 "--pair-iter", "1000", *FAST]) == 0
    out = capsys.readouterr().out
    assert "6 directed gains" in out
    for f in ("gains.csv", "curve_features.csv", "heatmap.png", "report.md", "report.html"):
        assert (tmp_path / "out" / f).exists(), f
    header = (tmp_path / "out" / "gains.csv").read_text().splitlines()[0]
    assert header == "main,aux,f1_single,f1_pair,gain,label"
    assert main(["--logs", str(tmp_path / "nope"), "--out", str(tmp_path / "o2"), "--quiet"]) == 2


# ------------------------------------------------------------------------------------------------------
# the real logs (../shared/data/eacl2017/logs)
# ------------------------------------------------------------------------------------------------------
def _oracle_f1(path, task, it):
    """F1 of `task` at iteration `it`, by plain string splitting of the log lines."""
    found = None
    for line in open(path):
        parts = [p.strip() for p in line.strip().split(",")]
        if parts[0] == f"Iter {it}" and parts[1] == f"task {task}":
            fields = dict(p.split(" ", 1) for p in parts[2:])
            found = float(fields["f1"])
    return found


@pytest.mark.shared_data
def test_real_logs_gains_against_independent_parse(shared_data):
    logs = shared_data / "eacl2017" / "logs"
    runs = read_logs(logs)
    rows, notes = compute_gains(runs)
    assert len(rows) == 90 and not notes
    g = {(r["main"], r["aux"]): r for r in rows}
    for main_t, aux_t in [("hyperlinks", "semcor"), ("gpos", "ccg"), ("fnt", "gpos"), ("mwe", "chunking"),
                          ("streusle", "gpos"), ("com", "keysem17"), ("chunking", "semcor")]:
        run = "_".join(sorted([main_t, aux_t]))
        fs = _oracle_f1(logs / main_t / "loss_dv.log", main_t, 50000)
        fp = _oracle_f1(logs / run / "loss_dv.log", main_t, 100000)
        assert g[(main_t, aux_t)]["f1_single"] == fs
        assert g[(main_t, aux_t)]["f1_pair"] == fp
        assert g[(main_t, aux_t)]["gain"] == pytest.approx((fp / fs - 1) * 100, rel=1e-12)
    gains = np.array([r["gain"] for r in rows])
    assert (gains > 0).sum() == 40 and (gains < 0).sum() == 50  # the paper: 40 gains, 50 losses


@pytest.mark.shared_data
def test_real_logs_curve_features_gradient_oracle(shared_data):
    logs = shared_data / "eacl2017" / "logs"
    runs = read_logs(logs)
    curves, notes = single_curves(runs)
    losses = [float(l.rsplit("loss", 1)[1]) for l in open(logs / "gpos" / "loss_tr.log")]
    n = len(losses)
    i = int(n * 0.3)
    from mtlfast.meta.curves import curve_features

    f = curve_features(curves["gpos"][1])
    assert f["grad_30"] == pytest.approx((losses[i + 1] - losses[i - 1]) / 2, rel=1e-12)
    assert np.isfinite(f["curve_a"]) and f["curve_a"] < 0 and np.isfinite(f["curve_c"])
    assert any("hyperlinks" in n and "restarts" in n for n in notes)
    assert any("com" in n and "100,000" in n for n in notes)


@pytest.mark.shared_data
def test_real_logs_cli_prints_counts_and_table(shared_data, tmp_path, capsys):
    logs = shared_data / "eacl2017" / "logs"
    assert main(["--logs", str(logs), "--out", str(tmp_path), "--search", "none", *FAST]) == 0
    out = capsys.readouterr().out
    assert "90 directed gains: 40 gains, 50 losses" in out
    assert "majority baseline" in out and "always gain" in out and "all 7 curve features" in out
    assert "data features absent" in out
    md = (tmp_path / "report.md").read_text()
    assert "Data features are absent" in md and "![" in md
    assert len((tmp_path / "curve_features.csv").read_text().splitlines()) == 11
