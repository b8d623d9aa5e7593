"""Report: heatmap, self-contained HTML, and ``mtlfast.analyze`` on small fake sweeps (incl. degenerate ones)."""

import base64
import json
import re

import numpy as np
import pytest

from fakesweep import write_fake_sweep  # tests/fakesweep.py
from mtlfast.report import Report, gain_matrix, heatmap

FAST = {"n_repeats": 3, "outer_repeats": 1, "inner_repeats": 1, "optimistic_repeats": 2, "search": "greedy"}
PNG = b"\x89PNG\r\n\x1a\n"


def test_gain_matrix_rows_main_columns_aux():
    tasks, M = gain_matrix([{"main": "a", "aux": "b", "gain": 1.5}, {"main": "b", "aux": "a", "gain": -2.0}])
    assert tasks == ["a", "b"]
    assert M[0, 1] == 1.5 and M[1, 0] == -2.0 and np.isnan(M[0, 0])


def test_heatmap_writes_png(tmp_path):
    rows = [{"main": m, "aux": a, "gain": float(i) - 3} for i, (m, a) in
            enumerate([(m, a) for m in "abc" for a in "abc" if m != a])]
    p = heatmap(rows, tmp_path / "h.png")
    assert p.read_bytes()[:8] == PNG


def test_html_is_self_contained(tmp_path):
    heatmap([{"main": "a", "aux": "b", "gain": 1.0}, {"main": "b", "aux": "a", "gain": -1.0}], tmp_path / "h.png")
    rep = Report("t")
    rep.paragraph("some **bold** `code` <script>")
    rep.table(["x", "y"], [[1.23456, float("nan")]])
    rep.image("h.png", "fig")
    html = rep.to_html(tmp_path)
    assert "<script>" not in html  # escaped
    srcs = re.findall(r'src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert base64.b64decode(srcs[0].split(",", 1)[1])[:8] == PNG
    assert "1.235" in html and "–" in html
    md = rep.to_markdown()
    assert "![fig](h.png)" in md and "| x | y |" in md


def _check_report(out):
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert (out / "heatmap.png").read_bytes()[:8] == PNG
    assert "data:image/png;base64," in html
    assert not re.search(r'src="(?!data:)', html)
    return md, html


def test_analyze_small_sweep_writes_the_report(tmp_path):
    from mtlfast.analyze import analyze

    write_fake_sweep(tmp_path, n_tasks=7)
    md_path = analyze(tmp_path, quiet=True, settings=FAST)
    assert md_path == tmp_path / "report.md"
    md, html = _check_report(tmp_path)
    for needle in ("Figure 1", "Table 3", "majority baseline", "always gain", "all features", "data features only",
                   "curve features only", "nested CV", "optimistic, not nested", "Leave one task out",
                   "Coefficients", "0.555", "0.615", "Run settings", "steps_single"):
        assert needle in md, needle
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["counts"]["pairs"] == 42
    assert len(meta["coefficients"]) == 42
    assert (tmp_path / "curves.png").exists()


def test_analyze_without_features_csv_is_curve_only(tmp_path):
    from mtlfast.analyze import analyze

    write_fake_sweep(tmp_path, n_tasks=6, with_features=False)
    analyze(tmp_path, quiet=True, settings=FAST)
    md, _ = _check_report(tmp_path)
    assert "features.csv missing" in md
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["counts"]["columns"] == 21


def test_analyze_single_class_says_so(tmp_path):
    from mtlfast.analyze import analyze

    write_fake_sweep(tmp_path, n_tasks=6, all_gain=True)
    analyze(tmp_path, quiet=True, settings=FAST)
    md, _ = _check_report(tmp_path)
    assert "same label" in md


def test_analyze_recomputes_gains_from_scores_and_fails_clearly(tmp_path):
    from mtlfast.analyze import AnalyzeError, _gains_from_scores, analyze, main
    from mtlfast.meta.table import read_gains

    truth = write_fake_sweep(tmp_path / "s", n_tasks=5, with_curves=False)
    written = read_gains(tmp_path / "s" / "gains.csv")
    recomputed = _gains_from_scores(tmp_path / "s" / "scores.csv")
    assert [(g["main"], g["aux"]) for g in recomputed] == [(g["main"], g["aux"]) for g in written]
    intended = {(g["main"], g["aux"]): g["gain"] for g in truth["gains"]}
    for g in recomputed:
        assert g["gain"] == pytest.approx(intended[(g["main"], g["aux"])], rel=1e-9, abs=1e-9)
    (tmp_path / "s" / "gains.csv").unlink()
    analyze(tmp_path / "s", quiet=True, settings=FAST)
    md, _ = _check_report(tmp_path / "s")
    assert "recomputed from scores.csv" in md and "curves.csv missing" in md
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnalyzeError, match="gains.csv"):
        analyze(tmp_path / "empty", quiet=True)
    assert main([str(tmp_path / "empty"), "--quiet"]) == 2


@pytest.mark.slow
def test_analyze_default_settings(tmp_path):
    from mtlfast.analyze import analyze

    write_fake_sweep(tmp_path, n_tasks=7)
    analyze(tmp_path, quiet=True)
    _check_report(tmp_path)
