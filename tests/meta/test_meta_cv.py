"""Vectorised meta-classifier CV against scikit-learn's own loop (independent oracle)."""

import warnings

import numpy as np
import pytest
from sklearn.feature_selection import RFE
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from cv_oracle import fit_logreg_batch, minmax_scale_folds  # tests/cv_oracle.py
from mtlfast.meta.cv import baseline_scores, cross_validate, fit_logreg_folds, make_folds, rfe_ranking
from mtlfast.meta.search import all_subsets, nested_search, score_subsets, search_best

@pytest.fixture(autouse=True)
def _one_blas_thread():
    # the scikit-learn oracle loops are many tiny fits: extra BLAS threads only contend on a shared machine
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


# a prediction may differ from scikit-learn's only for a test point this close to the decision boundary:
# lbfgs stops at tol=1e-4, our Newton solve at machine precision (see mtlfast/meta/cv.py; observed: < 4e-3)
BOUNDARY_TOL = 1e-2


def _data(n=90, p=42, seed=0):
    rng = np.random.default_rng(seed)
    # columns on very different scales and offsets, like the real pair table
    X = rng.normal(size=(n, p)) * rng.uniform(0.01, 1000, size=p) + rng.uniform(-1e3, 1e3, size=p)
    z = (X[:, 0] - X[:, 0].mean()) / X[:, 0].std() - (X[:, 3] - X[:, 3].mean()) / X[:, 3].std()
    y = (z + rng.normal(size=n) > 0.3).astype(int)
    return X, y


def _splits(y, n_repeats, seed):
    return list(RepeatedStratifiedKFold(n_splits=5, n_repeats=n_repeats, random_state=seed).split(
        np.zeros((len(y), 1)), y))


def test_make_folds_are_sklearns():
    X, y = _data()
    tr, te = make_folds(y, 5, 3, random_state=7)
    for k, (a, b) in enumerate(_splits(y, 3, 7)):
        assert np.array_equal(np.nonzero(tr[k])[0], a)
        assert np.array_equal(np.nonzero(te[k])[0], b)


@pytest.mark.parametrize("seed,n_rep", [(0, 10), (1, 4)])
def test_same_predictions_and_scores_as_sklearn_loop(seed, n_rep):
    X, y = _data(seed=seed)
    tr, te = make_folds(y, 5, n_rep, random_state=seed)
    res = cross_validate(X, y, tr, te, keep=True)
    splits = _splits(y, n_rep, seed)
    pipe = make_pipeline(MinMaxScaler(), LogisticRegression())
    n_boundary = 0
    sk_acc, sk_f1 = [], []
    for k, (a, b) in enumerate(splits):
        model = pipe.fit(X[a], y[a])
        sk_pred = model.predict(X[b])
        ours = res.pred[k, b]
        differ = sk_pred != ours
        if differ.any():
            assert np.all(np.abs(res.decision[k, b][differ]) < BOUNDARY_TOL)
            n_boundary += int(differ.sum())
        else:
            sk_acc.append(np.mean(sk_pred == y[b]))
            sk_f1.append(f1_score(y[b], sk_pred, zero_division=0))
            assert res.accuracy[k] == pytest.approx(sk_acc[-1], abs=1e-12)
            assert res.f1[k] == pytest.approx(sk_f1[-1], abs=1e-12)
    assert n_boundary <= 2
    # and the scores of scikit-learn's cross_val_score on the same folds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acc = cross_val_score(pipe, X, y, cv=splits, scoring="accuracy")
        f1 = cross_val_score(pipe, X, y, cv=splits, scoring="f1")
    if n_boundary == 0:
        np.testing.assert_allclose(res.accuracy, acc, atol=1e-12)
        np.testing.assert_allclose(res.f1, f1, atol=1e-12)
    else:
        assert abs(res.accuracy.mean() - acc.mean()) <= n_boundary / len(y)


def test_coefficients_match_sklearn_tight():
    X, y = _data(seed=3)
    tr, te = make_folds(y, 5, 2, random_state=0)
    res = cross_validate(X, y, tr, te, keep=True)
    for k in range(tr.shape[0]):
        lr = make_pipeline(MinMaxScaler(), LogisticRegression(tol=1e-12, max_iter=100000)).fit(X[tr[k]], y[tr[k]])[-1]
        np.testing.assert_allclose(res.coef[k], lr.coef_[0], atol=2e-4, rtol=1e-4)
        assert res.intercept[k] == pytest.approx(lr.intercept_[0], abs=2e-4)


def test_batch_and_fold_solvers_agree_with_column_masks():
    X, y = _data(seed=4)
    tr, _ = make_folds(y, 5, 4, random_state=1)
    rng = np.random.default_rng(0)
    cm = rng.random((tr.shape[0], X.shape[1])) > 0.6
    c1, b1, _ = fit_logreg_batch(minmax_scale_folds(X, tr), y, tr, col_mask=cm)
    c2, b2, _, _ = fit_logreg_folds(X, y, tr, col_mask=cm)
    np.testing.assert_allclose(c1, c2, atol=1e-9)
    np.testing.assert_allclose(b1, b2, atol=1e-9)
    assert np.all(c2[~cm] == 0)


def test_column_mask_equals_fitting_the_subset_in_sklearn():
    X, y = _data(seed=5)
    tr, te = make_folds(y, 5, 1, random_state=2)
    cols = [0, 3, 7, 20]
    mask = np.zeros(X.shape[1], bool)
    mask[cols] = True
    res = cross_validate(X, y, tr, te, col_mask=mask, keep=True)
    for k in range(5):
        lr = make_pipeline(MinMaxScaler(), LogisticRegression(tol=1e-12, max_iter=100000)).fit(
            X[tr[k]][:, cols], y[tr[k]])[-1]
        np.testing.assert_allclose(res.coef[k][cols], lr.coef_[0], atol=2e-4)


def test_constant_column_in_a_fold_is_handled_like_sklearn():
    X, y = _data(n=60, p=5, seed=6)
    X[:, 2] = 3.0
    X[:5, 4] = 1e6  # extreme values: min-max scaling must still agree
    tr, te = make_folds(y, 5, 2, random_state=0)
    res = cross_validate(X, y, tr, te, keep=True)
    for k in range(tr.shape[0]):
        lr = make_pipeline(MinMaxScaler(), LogisticRegression(tol=1e-12, max_iter=100000)).fit(X[tr[k]], y[tr[k]])[-1]
        np.testing.assert_allclose(res.coef[k], lr.coef_[0], atol=2e-4)


def test_baselines_match_the_papers_numbers_on_40_gains_50_losses():
    y = np.array([1] * 40 + [0] * 50)
    tr, te = make_folds(y, 5, 20, random_state=0)
    b = baseline_scores(y, tr, te)
    # stratified folds: each test fold holds 8 gains and 10 losses
    assert b["majority"].accuracy.mean() == pytest.approx(50 / 90, abs=1e-12)
    assert b["majority"].f1.mean() == 0.0
    assert b["always_gain"].f1.mean() == pytest.approx(2 * 40 / (40 + 90), abs=1e-12)  # 0.615
    assert b["always_gain"].accuracy.mean() == pytest.approx(40 / 90, abs=1e-12)


def test_rfe_ranking_matches_sklearn_rfe():
    X, y = _data(n=90, p=8, seed=8)
    tr, _ = make_folds(y, 5, 1, random_state=3)
    ranks = rfe_ranking(X, y, tr)
    for k in range(5):
        Xs = MinMaxScaler().fit_transform(X[tr[k]])
        rfe = RFE(LogisticRegression(tol=1e-12, max_iter=100000), n_features_to_select=1, step=1).fit(Xs, y[tr[k]])
        assert np.array_equal(ranks[k], rfe.ranking_)


def test_subset_scores_equal_masked_cross_validation():
    X, y = _data(n=80, p=9, seed=9)
    groups = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    subs = all_subsets(3)
    assert subs.shape == (7, 3)
    tr, te = make_folds(y, 5, 2, random_state=0)
    acc, f1 = score_subsets(X, y, tr, te, subs, groups)
    for s, sub in enumerate(subs):
        mask = np.zeros(9, bool)
        for g, on in enumerate(sub):
            if on:
                mask[groups[g]] = True
        r = cross_validate(X, y, tr, te, col_mask=mask)
        assert acc[s] == pytest.approx(r.accuracy.mean(), abs=1e-12)
        assert f1[s] == pytest.approx(r.f1.mean(), abs=1e-12)


def test_search_finds_the_informative_group_and_nested_is_not_above_optimistic():
    rng = np.random.default_rng(10)
    n = 90
    X = rng.normal(size=(n, 12))
    y = (X[:, 4] + 0.3 * rng.normal(size=n) > 0).astype(int)  # only group 1 (columns 3-5) matters
    groups = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    tr, te = make_folds(y, 5, 4, random_state=0)
    for strategy in ("exhaustive", "greedy"):
        best = search_best(X, y, tr, te, groups, strategy=strategy)
        assert best["subset"][1]
    otr, ote = make_folds(y, 5, 1, random_state=1)
    nest = nested_search(X, y, groups, otr, ote, inner_splits=5, inner_repeats=1, strategy="exhaustive")
    assert nest["chosen"][:, 1].all()
    assert nest["accuracy"].mean() > 0.8
