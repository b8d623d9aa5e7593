"""The pieces of a result folder's report (issue 18): our gains beside the paper's, the paper's reading of the
coefficients, Table 3 under the notebook's CV (baselines, searches), the layout of table3.csv, the two feature
definitions of a result folder. Oracles: SciPy / NumPy rank correlation, scikit-learn's DummyClassifier,
KFold and scorers, plain loops."""

import math

import numpy as np
import pytest


def _rank(v):
    order = np.argsort(v)
    r = np.empty(len(v))
    r[order] = np.arange(len(v))
    return r


def test_compare_gains_counts_signs_and_rank_correlation():
    from mtlfast.meta.analysis import compare_gains

    rng = np.random.default_rng(0)
    tasks = list("abcdef")
    ours = [{"main": m, "aux": a, "gain": float(rng.normal())} for m in tasks for a in tasks if m != a]
    paper = [{"main": r["main"], "aux": r["aux"], "gain": r["gain"] * 0.5 + float(rng.normal())} for r in ours]
    paper[0]["gain"] = math.nan  # left out
    paper = paper[:-1]  # a pair the paper lacks: left out
    res = compare_gains(ours, paper, tasks=list("abcd"))
    keep = [(o, p) for o, p in zip(ours, paper) if set((o["main"], o["aux"])) <= set("abcd")
            and math.isfinite(p["gain"])]
    a = np.array([o["gain"] for o, _ in keep])
    b = np.array([p["gain"] for _, p in keep])
    assert res["n"] == len(keep) == 11
    assert res["sign_agree"] == sum((x > 0) == (y > 0) for x, y in zip(a, b))
    assert res["sign_agreement"] == pytest.approx(res["sign_agree"] / len(keep))
    pa, pb = (a > 0).mean(), (b > 0).mean()
    assert res["chance_agreement"] == pytest.approx(pa * pb + (1 - pa) * (1 - pb))
    assert res["spearman"] == pytest.approx(np.corrcoef(_rank(a), _rank(b))[0, 1], abs=1e-12)
    assert 0 <= res["spearman_p"] <= 1
    assert res["ours_gains"] == int((a > 0).sum()) and res["paper_gains"] == int((b > 0).sum())
    every = compare_gains(ours, paper)
    assert every["n"] == len(ours) - 2
    assert compare_gains(ours, [])["n"] == 0 and math.isnan(compare_gains(ours, [])["spearman"])


def test_reading_check_names_the_expected_signs():
    from mtlfast.meta.analysis import PAPER_READING, reading_check

    coefs = [{"column": "main_grad_30", "mean": 0.4, "positive_share": 0.9},
             {"column": "aux_grad_30", "mean": 0.2, "positive_share": 0.7},
             {"column": "main_size", "mean": -3.0, "positive_share": 0.0}]
    rows = {r["column"]: r for r in reading_check(coefs)}
    assert set(rows) == {"main_grad_30", "aux_grad_30"}
    assert PAPER_READING["main_grad_30"] == 1 and rows["main_grad_30"]["agrees"] == 1
    assert PAPER_READING["aux_grad_30"] == -1 and rows["aux_grad_30"]["agrees"] == 0


def test_paper_task_names_cover_the_ten_public_tasks():
    from mtlfast.meta.analysis import PAPER_TASK_NAMES, SAME_CORPORA

    assert sorted(PAPER_TASK_NAMES.values()) == sorted(["ccg", "chu", "com", "fnt", "pos", "hyp", "key", "mwe", "sem",
                                                        "str"])
    assert set(SAME_CORPORA) <= set(PAPER_TASK_NAMES.values()) and len(SAME_CORPORA) == 6
    assert not {"ccg", "pos", "hyp", "com"} & set(SAME_CORPORA)


def _notebook_seeds(n_repeats, seed):
    rng = np.random.RandomState(seed)
    return [int(rng.randint(100)) for _ in range(n_repeats)]


def test_original_baselines_match_dummy_classifiers_on_the_notebooks_folds():
    from sklearn.dummy import DummyClassifier
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import KFold

    from mtlfast.meta.original import original_baselines

    rng = np.random.default_rng(3)
    y = np.array([1] * 16 + [-1] * 9)
    rng.shuffle(y)  # 16 / 9: no training fold of 20 rows ties
    res = original_baselines(y, n_repeats=7, n_splits=5, seed=4)
    X = np.zeros((len(y), 1))
    for name, clf in (("majority baseline", DummyClassifier(strategy="most_frequent")),
                      ("always gain", DummyClassifier(strategy="constant", constant=1))):
        f1_reps, acc_reps = [], []
        for rs in _notebook_seeds(7, 4):
            f, a = [], []
            for tr, te in KFold(5, shuffle=True, random_state=rs).split(X):
                p = clf.fit(X[tr], y[tr]).predict(X[te])
                f.append(f1_score(y[te], p, pos_label=1, zero_division=0))
                a.append(accuracy_score(y[te], p))
            f1_reps.append(np.mean(f))
            acc_reps.append(np.mean(a))
        assert res[name]["f1"] == pytest.approx(np.mean(f1_reps), abs=1e-12), name
        assert res[name]["accuracy"] == pytest.approx(np.mean(acc_reps), abs=1e-12), name
        assert res[name]["f1_sd"] == pytest.approx(np.std(f1_reps), abs=1e-12), name


def _pair_data(n_tasks=6, seed=0):
    """Gains decided by one task feature (``size`` of the main task), two noise features."""
    rng = np.random.default_rng(seed)
    tasks = [f"t{i}" for i in range(n_tasks)]
    feats = {t: {"size": float(100 + 50 * i), "oov_rate": float(rng.uniform(1, 5)),
                 "label_entropy": float(rng.uniform(1, 3))} for i, t in enumerate(tasks)}
    gains = [{"main": m, "aux": a, "gain": (1.0 if feats[m]["size"] > 230 else -1.0) * float(rng.uniform(0.5, 2))}
             for m in tasks for a in tasks if m != a]
    return gains, feats


def test_original_search_finds_the_informative_feature_and_scores_it_like_original_cv():
    from mtlfast.meta.original import original_cv, original_pair_matrix, original_search

    gains, feats = _pair_data()
    pm = original_pair_matrix(gains, feats)
    res = original_search(pm["X"], pm["y"], pm["columns"], n_repeats=3, n_splits=5, seed=1, outer_repeats=1)
    opt = res["optimistic"]
    assert "size" in opt["features"]
    # the optimistic number is the notebook's CV of the chosen features on the same folds
    sub = original_pair_matrix(gains, feats, opt["features"])
    cv = original_cv(sub["X"], sub["y"], n_repeats=3, n_splits=5, seed=1)
    assert opt["accuracy"] == pytest.approx(cv["accuracy"], abs=1e-12)
    assert opt["f1"] == pytest.approx(cv["f1"], abs=1e-12)
    nest = res["nested"]
    assert len(nest["chosen"]) == 5 and all("size" in c for c in nest["chosen"])
    assert nest["accuracy"] > 0.7 and len(nest["accuracy_reps"]) == 1
    assert original_search(pm["X"], pm["y"], pm["columns"], 2, 5, 0, outer_repeats=0)["nested"] is None


def test_original_meta_table3_rows_and_search_switch():
    from mtlfast.meta.original import original_meta

    gains, feats = _pair_data()
    for t in feats:
        feats[t].update(grad_10=-0.1 * (1 + len(t)), grad_20=-0.05 - 0.001 * int(t[1:]))
    plain = original_meta(gains, feats, n_repeats=3, search=False)
    names = [r["name"] for r in plain["table3"]]
    assert names == ["majority baseline", "always gain", "all features", "data features only", "curve features only"]
    assert {r["column"] for r in plain["coefficients"]} == {f"{p}_{f}" for f in feats["t0"]
                                                            for p in ("main", "aux", "main/aux")}
    full = original_meta(gains, feats, n_repeats=3, search=True, search_repeats=2, outer_repeats=1)
    names_full = [r["name"] for r in full["table3"]]
    assert names_full[:5] == names and {"best combination (nested CV)", "best combination (optimistic, not nested)",
                                        "best data features (optimistic, not nested)"} <= set(names_full)
    for a, b in zip(plain["table3"], full["table3"]):  # the same folds: the same numbers
        assert a == b


def test_table3_rows_lay_out_both_protocols_beside_the_paper():
    from mtlfast.report.results import TABLE3_COLUMNS, table3_rows

    orig = [{"name": "all features", "accuracy": 0.7, "accuracy_sd": 0.01, "f1": 0.6, "f1_sd": 0.02}]
    clean = [{"name": "all features", "accuracy": 0.8, "accuracy_sd": 0.1, "f1": 0.5, "f1_sd": 0.2},
             {"name": "majority baseline", "accuracy": 0.55, "accuracy_sd": 0.1, "f1": 0.0, "f1_sd": 0.0}]
    rows = table3_rows(orig, clean)
    assert [r["name"] for r in rows] == ["majority baseline", "all features"]
    assert all(list(r) == list(TABLE3_COLUMNS) for r in rows)
    maj, allf = rows
    assert maj["paper_accuracy"] == 0.555 and math.isnan(maj["paper_f1"]) and math.isnan(maj["original_accuracy"])
    assert (allf["paper_accuracy"], allf["paper_f1"]) == (0.749, 0.669)
    assert (allf["original_accuracy"], allf["clean_f1_sd"]) == (0.7, 0.2)


def test_read_feature_definitions_splits_the_columns(tmp_path):
    from mtlfast.meta.table import TableError, read_feature_definitions
    from mtlfast.stats import DATA_FEATURES

    cols = ["task", *DATA_FEATURES, *[f"clean_{f}" for f in DATA_FEATURES]]
    (tmp_path / "features.csv").write_text(",".join(cols) + "\n" + ",".join(["a", *map(str, range(7)),
                                                                                   *map(str, range(10, 17))]) + "\n")
    (tmp_path / "curve_features.csv").write_text("task,grad_10,curve_a\na,-0.5,2\n")
    d = read_feature_definitions(tmp_path, "original")
    assert d["original"]["a"]["size"] == float(DATA_FEATURES.index("size"))
    assert d["clean"]["a"]["size"] == 10.0 + DATA_FEATURES.index("size")
    assert d["original"]["a"]["grad_10"] == -0.5 and "grad_10" not in d["clean"]["a"]
    d = read_feature_definitions(tmp_path, "clean")  # the unprefixed columns are the sweep's own definition
    assert d["clean"]["a"]["size"] == float(DATA_FEATURES.index("size"))
    with pytest.raises(TableError, match="protocol"):
        read_feature_definitions(tmp_path, "other")


def test_resolved_steps_follow_the_paper_flags():
    from mtlfast.analyze import _resolved_steps

    assert _resolved_steps({"paper": True, "steps_single": 600, "steps_pair": 1200}) == (25_000, 50_000)
    assert _resolved_steps({"paper_logs": True, "steps_single": 600}) == (50_000, 100_000)
    assert _resolved_steps({"steps_single": 600, "steps_pair": 1200}) == (600, 1200)


def test_paper_comparison_section_renders_both_comparisons():
    from mtlfast.meta.analysis import SAME_CORPORA, compare_gains
    from mtlfast.report import Report
    from mtlfast.report.results import add_paper_comparison

    rng = np.random.default_rng(5)
    tasks = ["ccg", "chu", "com", "fnt", "pos", "hyp", "key", "mwe", "sem", "str"]
    paper = [{"main": m, "aux": a, "gain": float(rng.normal())} for m in tasks for a in tasks if m != a]
    ours = [{**r, "gain": -r["gain"] if r["main"] == "chu" else r["gain"]} for r in paper]
    same, every = compare_gains(ours, paper, SAME_CORPORA), compare_gains(ours, paper)
    assert same["n"] == 30 and every["n"] == 90
    assert same["sign_agree"] == 25  # chu's five rows among the six flipped
    rep = Report("t")
    add_paper_comparison(rep, same, every, "test")
    md = rep.to_markdown()
    assert "| the six same corpora | 30 | 25 (0.83) |" in md
    assert "| all ten tasks (four substitutes) | 90 | 81 (0.90) |" in md
    chu = [ln for ln in md.splitlines() if ln.startswith("| chu | ")]
    assert len(chu) == 5 and all(ln.endswith("| no |") for ln in chu) and "| mwe | str |" in md
