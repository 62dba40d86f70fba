"""The figures of one run: :data:`RUN_FIGURES`, one spec per figure (name, how to draw it,
whether a record has data for it, whether it is a key figure), and ``render_figures``,
which picks from it and nowhere else. Each is drawn from the record alone; the figures
live by topic in the ``*_figures`` modules, shared helpers in ``plotting``."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from initlab.record import EPOCH_CHECKPOINTS, RunRecord
from initlab.report import activation_figures as act
from initlab.report import boundary_figures as boundary
from initlab.report import gradient_figures as grad
from initlab.report import signal_figures as signal
from initlab.report import training_figures as training
from initlab.report import weight_figures as weight
from initlab.report.plotting import style


@dataclass(frozen=True)
class FigureSpec:
    name: str  # file stem, e.g. "loss_accuracy"
    draw: Callable[[RunRecord, Path, int], Path | None]  # (record, path, dpi) -> written path
    applies: Callable[[RunRecord], bool]  # whether the record has data for it
    key: bool  # in the key set a single run draws by default
    about: str = ""  # one line for docs and listings


def _has(table: str) -> Callable[[RunRecord], bool]:
    """Whether the record's ``table`` (metrics, weights, ...) holds any row."""
    return lambda record: bool(getattr(record, table))


RUN_FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("loss_accuracy", training.loss_and_accuracy, _has("metrics"), key=True,
               about="train and dev loss and accuracy over epochs"),
    FigureSpec("grad_norm_by_layer", grad.grad_norm_by_layer, _has("grad_norms"), key=True,
               about="gradient L2 norm per layer, first and last step (log scale)"),
    FigureSpec("grad_norm_over_time", grad.grad_norm_over_time, grad.has_several_steps, key=False,
               about="gradient L2 norm per parameter over optimizer steps"),
    FigureSpec("grad_norm_heatmap", grad.grad_norm_heatmap, grad.has_deep_grad_norms, key=False,
               about="weight-gradient norm per layer and epoch (deep nets)"),
    FigureSpec("signal_at_init", signal.signal_at_init, signal.has_signal, key=False,
               about="q and the backpropagated signal per layer at init, beside mean-field theory"),
    FigureSpec("initial_weights", weight.initial_weights, weight.has_initial_weights, key=True,
               about="the init scheme's shape (fresh draws) and the net's initial weights"),
    FigureSpec("weights_over_time", weight.weights_over_time, _has("weights"), key=False,
               about="every weight of a small model over log epochs"),
    FigureSpec("weight_distribution", weight.weight_distribution, _has("weight_stats"),
               key=False, about="weight quantiles per layer over log epochs"),
    FigureSpec("activation_stats", act.activation_stats_over_time, _has("activations"),
               key=False, about="hidden activation mean, std, fraction zero / saturated"),
    FigureSpec("activation_histograms", act.activation_histograms, _has("activation_hists"),
               key=False, about="hidden activation histograms over log epochs (heat maps)"),
    FigureSpec("decision_boundary", boundary.decision_boundary, boundary.has_boundary, key=True,
               about="P(class 1) of the best-on-dev model over the plane"),
    FigureSpec("decision_boundary_epochs", boundary.decision_boundary_over_epochs,
               lambda r: boundary.has_boundary(r, EPOCH_CHECKPOINTS), key=False,
               about="the decision boundary at a few log epochs"),
)
FIGURE_SETS = ("none", "key", "full")


def selected_figures(record: RunRecord, which: str = "full") -> list[FigureSpec]:
    """The specs of ``which`` set that ``record`` has data for, in reading order."""
    if which not in FIGURE_SETS:
        raise ValueError(f"unknown figure set {which!r} (choose from: {', '.join(FIGURE_SETS)})")
    if which == "none":
        return []
    return [s for s in RUN_FIGURES if (which == "full" or s.key) and s.applies(record)]


def render_figures(record: RunRecord, which: str = "full", fmt: str = "png",
                   dpi: int = 120) -> list[Path]:
    """Draw the ``which`` set ("none", "key" or "full") of figures the record has data for
    into ``record.figures_dir``; returns the files written."""
    specs = selected_figures(record, which)
    if not specs:
        return []
    style()
    written = [s.draw(record, record.figures_dir / f"{s.name}.{fmt}", dpi) for s in specs]
    return [p for p in written if p is not None]
