"""Report: the gains heatmap (Figure 1), learning curves, tables; Markdown and self-contained HTML."""

from mtlfast.report.document import Report, fmt
from mtlfast.report.figures import gain_matrix, heatmap, plot_curves

__all__ = ["Report", "fmt", "heatmap", "gain_matrix", "plot_curves"]
