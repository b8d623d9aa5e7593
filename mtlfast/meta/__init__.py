"""Meta-learning: curve features, the 42-feature pair table, the vectorised meta-classifier CV, feature search,
the full meta-analysis and :class:`GainPredictor`."""

from mtlfast.meta.analysis import PAPER_TABLE3, MetaSettings, leave_one_task_out, meta_analysis
from mtlfast.meta.curves import CURVE_FEATURES, CurveFitWarning, curve_features, fit_log_curve, gradient_at
from mtlfast.meta.cv import baseline_scores, cross_validate, fit_logreg_folds, make_folds, rfe_ranking
from mtlfast.meta.predictor import GainPredictor, pairs_for_new_tasks, predict_pairs
from mtlfast.meta.search import nested_search, search_best
from mtlfast.meta.table import DATA_FEATURES, TASK_FEATURES, PairTable, pair_table

__all__ = [
    "CURVE_FEATURES", "DATA_FEATURES", "TASK_FEATURES", "PAPER_TABLE3", "CurveFitWarning", "GainPredictor",
    "MetaSettings", "PairTable", "baseline_scores", "cross_validate", "curve_features", "fit_log_curve",
    "fit_logreg_folds", "gradient_at", "leave_one_task_out", "make_folds", "meta_analysis",
    "nested_search", "pair_table", "pairs_for_new_tasks", "predict_pairs", "rfe_ranking", "search_best",
]
