"""Overlay figures of a sweep, one line (or band) per job or seed group, drawn from the
jobs' records as read by :mod:`initlab.report.compare`:

- ``grad_norm_by_layer``: the textbook figure, weight-gradient L2 norm per layer on a log
  scale at the first step (and the last step when the jobs took more than one);
- ``loss_accuracy``: train and dev loss and accuracy over epochs;
- ``final_accuracy``: final (best-on-dev) dev and test accuracy per job.

A series holding several seeds is drawn as its mean with a band of one standard
deviation (for gradient norms: the geometric mean, the band one std of the log).
Series keep one colour, line style and marker across the three figures, and lines that
coincide still show (see :func:`plotting.series_style`).

This module reads series by duck typing (``label``, ``jobs``, ``finished_jobs``); it
does not import :mod:`initlab.report.compare`, which imports it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from initlab.record import layer_number
from initlab.report import COMPARISON_FIGURES
from initlab.report.plotting import (
    epoch_axis,
    figure,
    has_zeros,
    log_axes,
    markevery,
    note_non_finite,
    save,
    series_style,
    set_accuracy_axis,
    set_value_limits,
    share_log_limits,
    style,
    suptitle,
)

# The series drawn are initlab.report.compare's Series (label, jobs); this module reads
# only those two fields and imports nothing of the comparison's, which calls it.
Series = Any

# Legends of more series than this go beside the axes, so no line is hidden.
LEGEND_INSIDE = 6


# A legend beside the axes gets another column every this many entries.
LEGEND_ROWS = 18


def _legend_columns(series) -> int:
    return 1 + (len(series) - 1) // LEGEND_ROWS


def _legend_width(series) -> float:
    """Inches a legend beside the axes needs (0 when it fits inside)."""
    if len(series) <= LEGEND_INSIDE:
        return 0.0
    longest = max(len(s.label) for s in series)
    return _legend_columns(series) * min(0.9 + 0.065 * longest, 4.0)


def _legend(ax, series, **kw) -> None:
    if len(series) > LEGEND_INSIDE:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8,
                  ncol=_legend_columns(series), **kw)
    else:
        ax.legend(fontsize=8, **kw)


def _missing_note(fig, series, has_data) -> None:
    """Name the jobs that have nothing to draw, so a failed job is not silently absent."""
    missing = [f"job {j.name} ({j.label}): {j.status}" for s in series for j in s.jobs
               if not has_data(j)]
    if missing:
        shown = "; ".join(missing[:4]) + (f"; and {len(missing) - 4} more" if len(missing) > 4
                                          else "")
        fig.text(0.01, 0.01, f"Not shown: {shown}", fontsize=8, color="0.35", ha="left",
                 va="bottom", wrap=True)


def _subtitle(shared: str) -> str:
    return f"\nevery job: {shared}" if shared else ""


# -------------------------------------------------------------- gradient norm by layer
def _centre_and_band(values: list[float]) -> tuple[float, float, float]:
    """Geometric mean and the band of one std of log10 over the jobs' values; exact zeros
    and non-finite values are reported as such, not averaged into a number."""
    v = np.asarray(values, dtype=float)
    if not v.size:
        return math.nan, math.nan, math.nan
    if not np.isfinite(v).all():
        return math.nan if np.isnan(v).any() else math.inf, math.nan, math.nan
    if (v == 0).all():
        return 0.0, math.nan, math.nan
    logs = np.log10(v[v > 0])
    m, sd = logs.mean(), logs.std()
    return 10**m, 10 ** (m - sd), 10 ** (m + sd)


def grad_norm_by_layer(series: list[Series], shared: str, path: Path, dpi: int) -> Path | None:
    layers = sorted({p.rsplit(".", 1)[0] for s in series for j in s.jobs for p in j.grad_first
                     if p.endswith("weight")}, key=layer_number)
    if not layers:
        return None
    several_steps = any((j.last_step or 0) > 0 for s in series for j in s.jobs)
    moments = [("grad_first", "first step (step 0)")]
    if several_steps:
        last_steps = {j.last_step for s in series for j in s.jobs if j.last_step is not None}
        moments.append(("grad_last", f"last step (step {last_steps.pop()})"
                        if len(last_steps) == 1 else "last step of each job"))
    n = len(series)
    # curves[attr][i] = (centre, low, high) per layer for series i
    curves = {attr: [np.array([_centre_and_band([getattr(j, attr)[f"{layer}.weight"]
                                                 for j in s.jobs
                                                 if f"{layer}.weight" in getattr(j, attr)])
                               for layer in layers]).reshape(len(layers), 3)
                     for s in series]
              for attr, _ in moments}
    zero_series = sorted({i for attr, _ in moments for i, c in enumerate(curves[attr])
                          if has_zeros(c[:, 0])})
    legend_w = _legend_width(series)
    panel_w = 5.6 if len(layers) <= 12 else 8
    fig, gs = figure(panel_w * len(moments) + 1 + legend_w, 5.0, 1, len(moments),
                     top=0.95, right=0.25 + legend_w, wspace=0.5,
                     bottom=0.55 + 0.25 * any(not j.grad_first for s in series for j in s.jobs))
    first = None
    # Small sideways offsets: series that coincide at a layer stay visible side by side.
    spread = min(0.3, 0.08 * (n - 1))
    offsets = np.linspace(-spread / 2, spread / 2, n) if n > 1 else np.zeros(1)
    x = np.arange(len(layers), dtype=float)
    logs = []
    for k, (attr, moment) in enumerate(moments):
        log = log_axes(fig, gs[k], zero_rows=len(zero_series))
        logs.append(log)
        for i, s in enumerate(series):
            centre, low, high = curves[attr][i].T
            if np.isnan(centre).all() and not any(getattr(j, attr) for j in s.jobs):
                continue
            st = series_style(i, n)
            # A layer the series' nets do not have (a shallower job of a depth sweep) is
            # left out, not drawn as a NaN on the top edge.
            has = np.array([any(f"{layer}.weight" in getattr(j, attr) for j in s.jobs)
                            for layer in layers])
            xs = (x + offsets[i])[has]
            log.plot(xs, centre[has], row=zero_series.index(i) if i in zero_series else 0,
                     label=s.label, **st)
            if len(s.jobs) > 1:
                log.band(xs, low[has], high[has], st["color"])
        log.finish("gradient L2 norm of the layer's weights" if k == 0 else "",
                   "layer (input → output)")
        if first is not None:
            log.ax.tick_params(axis="y", labelleft=False)
        bottom = log.strip or log.ax
        ticks = layers if len(layers) <= 12 else [name if i % max(1, len(layers) // 10) == 0
                                                  else "" for i, name in enumerate(layers)]
        bottom.set_xticks(x, ticks)
        bottom.set_xlim(-0.5, len(layers) - 0.5)
        note_non_finite(log.ax, log.non_finite)
        log.ax.set_title(moment, fontsize=10)
        first = first or log.ax
        last_ax = log.ax
    share_log_limits(logs)
    _legend(last_ax, series)
    band = (" (geometric mean across seeds, band ± 1 std of log10)"
            if any(len(s.jobs) > 1 for s in series) else "")
    suptitle(fig, "Gradient norm by layer" + band + _subtitle(shared), fontsize=11)
    _missing_note(fig, series, lambda j: bool(j.grad_first))
    return save(fig, path, dpi)


# ------------------------------------------------------------- loss and accuracy curves
def _mean_curve(jobs, key: str):
    """Epochs, mean and std over the jobs that reached each epoch (grouped once)."""
    epochs = np.concatenate([np.asarray(j.metrics["epoch"], dtype=int) for j in jobs] or [[]])
    values = np.concatenate([np.asarray(j.metrics[key], dtype=float) for j in jobs] or [[]])
    uniq, inverse = np.unique(epochs, return_inverse=True)
    ok = np.isfinite(values)
    count = np.bincount(inverse, weights=ok, minlength=len(uniq))
    total = np.bincount(inverse, weights=np.where(ok, values, 0), minlength=len(uniq))
    square = np.bincount(inverse, weights=np.where(ok, values**2, 0), minlength=len(uniq))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
        std = np.sqrt(np.maximum(np.where(count > 0, square / count - mean**2, np.nan), 0))
    return uniq, mean, std


def loss_accuracy(series: list[Series], shared: str, path: Path, dpi: int) -> Path | None:
    if not any(j.metrics for s in series for j in s.jobs):
        return None
    legend_w = _legend_width(series)
    fig, gs = figure(11 + legend_w, 7.4, 2, 2, top=0.95, right=0.25 + legend_w, wspace=0.9,
                     hspace=0.95,
                     bottom=0.55 + 0.25 * any(not j.metrics for s in series for j in s.jobs))
    axes = [[fig.add_subplot(gs[r, c]) for c in range(2)] for r in range(2)]
    panels = (("train_loss", "train loss"), ("dev_loss", "dev loss"),
              ("train_acc", "train accuracy"), ("dev_acc", "dev accuracy"))
    n = len(series)
    losses, all_epochs = [], set()
    for ax, (key, title) in zip([a for row in axes for a in row], panels, strict=True):
        for i, s in enumerate(series):
            jobs = [j for j in s.jobs if j.metrics]
            if not jobs:
                continue
            epochs, mean, std = _mean_curve(jobs, key)
            all_epochs.update(epochs.tolist())
            st = series_style(i, n)
            ax.plot(epochs, mean, label=s.label, markevery=markevery(i, len(epochs), n), **st)
            if len(jobs) > 1:
                ax.fill_between(epochs, mean - std, mean + std, color=st["color"], alpha=0.18,
                                linewidth=0)
            if key.endswith("loss"):
                losses.extend(mean[np.isfinite(mean)].tolist())
                losses.extend((mean + std)[np.isfinite(mean + std)].tolist())
        ax.set_title(title, fontsize=10)
    positive = [v for v in losses if v > 0]
    ratio = max(positive) / min(positive) if positive else 1
    for ax in axes[0]:
        ax.set_ylabel("binary cross-entropy")
        if ratio > 100:  # loss spanning decades: a log axis keeps the small ones readable
            ax.set_yscale("log")
        else:  # a 0.001 difference must not fill the panel
            set_value_limits(ax, losses, nonnegative=True)
    for ax in axes[1]:
        ax.set_ylabel("accuracy")
        set_accuracy_axis(ax)
    for row in axes:
        for ax in row:
            epoch_axis(ax, all_epochs)
    _legend(axes[0][1], series)
    band = " (mean ± 1 std across seeds)" if any(len(s.jobs) > 1 for s in series) else ""
    suptitle(fig, "Loss and accuracy" + band + _subtitle(shared), fontsize=11)
    _missing_note(fig, series, lambda j: bool(j.metrics))
    return save(fig, path, dpi)


# ------------------------------------------------------------------ final accuracies
def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else 0.0


SPLIT_MARKS = (("dev", "o", 0.45), ("test", "D", 0.95))  # split, marker, alpha


def final_accuracy(series: list[Series], shared: str, path: Path, dpi: int) -> Path:
    """Dots at the mean (bars would claim a zero the axis no longer shows), ± 1 std,
    one small dot per seed; the axis zoomed to the data, the value beside each row."""
    n = len(series)
    rows = []  # (y, series index, split, values)
    for i, s in enumerate(series):
        for k, (split, _, _) in enumerate(SPLIT_MARKS):
            values = [j.final(split, "acc") for j in s.finished_jobs]
            rows.append((i + (k - 0.5) * 0.36, i, split,
                         np.array([v for v in values if math.isfinite(v)])))
    reach = [(min(v.min(), v.mean() - _std(v)), max(v.max(), v.mean() + _std(v)))
             for *_, v in rows if v.size]
    lo, hi = (min(r[0] for r in reach), max(r[1] for r in reach)) if reach else (0.0, 1.0)
    if hi - lo < 0.1:  # at least 10 points of accuracy: a 0.002 difference stays small
        mid = (lo + hi) / 2
        lo, hi = mid - 0.05, mid + 0.05
    lo, hi = max(0.0, lo - 0.03), min(1.0, hi + 0.03)
    label_room = 0.22 * (hi - lo)  # value labels sit right of the data, never under a legend
    left = max(2.2, 0.4 + 0.085 * max((len(s.label) for s in series), default=0))  # no cut label
    fig, gs = figure(5.8 + left, 1.7 + 0.6 * n, top=0.7, bottom=0.95, left=left, right=0.3)
    ax = fig.add_subplot(gs[0])
    for y, i, split, values in rows:
        if not values.size:
            continue
        st = series_style(i)
        marker, alpha = {s: (m, a) for s, m, a in SPLIT_MARKS}[split][0:2]
        mean = float(values.mean())
        std = _std(values)
        if values.size > 1:
            ax.errorbar(mean, y, xerr=std, color="0.2", capsize=3, linewidth=1, zorder=2)
            ax.scatter(values, np.full(values.size, y), s=10, color="0.15", zorder=3,
                       alpha=0.7)
        ax.scatter([mean], [y], marker=marker, s=70, color=st["color"], alpha=alpha,
                   edgecolor="0.1", zorder=4)
        text = f"{split} {mean:.3f}" + (f" ± {std:.3f}" if values.size > 1 else "")
        ax.annotate(text, (max(values.max(), mean + std), y), xytext=(8, 0),
                    textcoords="offset points", va="center", fontsize=8)
    for i, s in enumerate(series):
        if not s.finished_jobs:
            status = ", ".join(sorted({j.status for j in s.jobs}))
            ax.text(lo + 0.01 * (hi - lo), i, status, va="center", fontsize=9, color="#D55E00",
                    fontweight="bold")
    ax.set_yticks(np.arange(n), [s.label for s in series])
    ax.set_ylim(n - 0.5, -0.5)  # first job on top; rows without dots keep their room
    ax.set_xlim(lo, hi + label_room)
    ax.set_xticks([t for t in ax.get_xticks() if lo - 1e-9 <= t <= min(hi, 1.0) + 1e-9])
    if lo < 0.5 < hi:
        ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("accuracy of the best-on-dev model" + (" (dotted: chance)" if lo < 0.5 < hi
                                                         else ""))
    ax.grid(axis="y", visible=False)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker=m, linestyle="none", color="0.5", alpha=a,
                      markeredgecolor="0.1", label=split) for split, m, a in SPLIT_MARKS]
    # The key sits in the lower left corner of the figure, where no value label can be.
    fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.01, 0.01), ncol=2,
               fontsize=8, frameon=False)
    seeds = " (mean ± 1 std, small dots = seeds)" if any(len(s.jobs) > 1 for s in series) else ""
    suptitle(fig, "Final dev and test accuracy" + seeds + _subtitle(shared), fontsize=11)
    return save(fig, path, dpi)


def render_comparison_figures(series: list[Series], shared: str, out_dir: Path,
                              fmt: str = "png", dpi: int = 120,
                              names: tuple[str, ...] = tuple(COMPARISON_FIGURES)) -> list[Path]:
    """Draw the comparison figures in ``names`` the jobs have data for; returns the files
    written."""
    style()
    draw = {"grad_norm_by_layer": grad_norm_by_layer, "loss_accuracy": loss_accuracy,
            "final_accuracy": final_accuracy}
    written = [draw[name](series, shared, out_dir / f"{name}.{fmt}", dpi)
               for name in COMPARISON_FIGURES if name in names]
    return [p for p in written if p is not None]
