"""Overlay figures of a sweep, one line (or band) per job or seed group: ``claim`` (a paper
preset's claim per layer at init, beside mean-field theory), ``phase_map`` (a sweep over
sigma_w^2 x sigma_b^2 as an ordered/chaotic map under theory's edge of chaos), ``grad_norm_by_layer`` (the
textbook figure, at the first and last step), ``loss_accuracy`` and ``final_accuracy``.
Seeds are drawn as a mean with a band of one std (gradient norms: geometric, in log10);
a series keeps its style across figures. Series are read by duck typing (``label``,
``jobs``, ``finished_jobs``): :mod:`initlab.report.compare` imports this module.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from initlab.record import LazyJSON, layer_number
from initlab.report import COMPARISON_FIGURES
from initlab.report.plotting import (
    colorbar_beside,
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
    spans_decades,
    style,
    suptitle,
)

Series = Any  # initlab.report.compare's Series
LEGEND_INSIDE = 6  # legends of more series go beside the axes
LEGEND_ROWS = 18  # entries per column of a legend beside the axes


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
    """Geometric mean and one std of log10 over the nonzero values (all zero: 0; a
    non-finite value: inf or NaN, no band)."""
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
                     label=s.label + _nonzero(s.jobs, lambda j, a=attr: any(
                         v for p, v in getattr(j, a).items() if p.endswith("weight"))),
                     **st)
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
    band = (" (geometric mean over the seeds where it is nonzero, band ± 1 std of log10)"
            if any(len(s.jobs) > 1 for s in series) else "")
    suptitle(fig, "Gradient norm by layer" + band + _subtitle(shared), fontsize=11)
    _missing_note(fig, series, lambda j: bool(j.grad_first))
    return save(fig, path, dpi)


# ------------------------------------------------------------------ a paper's claim
CLAIM_PANELS = (("q", "forward: q_l = E[z_l²]"), ("grad_sq", "backward: E‖δ_l‖² per example"),
                ("layer_sv_mean", "mean singular value of D_l W_l"))


def claim(series: list[Series], shared: str, path: Path, dpi: int) -> Path | None:
    """A paper preset's sweep only: per layer at init, each group's measurement over its
    seeds (geometric mean, band ± 1 std of log10, over the nets where it is nonzero) and
    mean-field theory's prediction (thin dotted), from init_signal."""
    if not any((j.summary.get("config") or {}).get("paper") for s in series for j in s.jobs):
        return None
    signals = [[_claim_signal(j) for j in s.finished_jobs] for s in series]
    if not any(signals):
        return None
    panels = [(k, t) for k, t in CLAIM_PANELS if any(_per_layer(g, k) for g in signals)]
    legend_w = _legend_width(series)
    fig, gs = figure(4.6 * len(panels) + 1 + legend_w, 4.6, 1, len(panels), top=0.95,
                     right=0.25 + legend_w, bottom=0.8, wspace=0.8)
    n = len(series)
    for c, (key, title) in enumerate(panels):
        ax = fig.add_subplot(gs[c])
        first = 1 if key == "layer_sv_mean" else 0  # a hidden layer's Jacobian: fc2 on
        for i, (s, group) in enumerate(zip(series, signals)):
            rows = _per_layer(group, key)
            if not rows:
                continue
            st = series_style(i, n)
            x = np.arange(first, first + len(rows[0]))
            bands = np.array([_centre_and_band([r[k] for r in rows if k < len(r) and r[k] is not None])
                              for k in range(len(rows[0]))])
            label = s.label + _nonzero(group, lambda g: not g.get("born_dead"))
            ax.plot(x, bands[:, 0], label=label, markevery=markevery(i, len(x), n), **st)
            if len(rows) > 1:
                ax.fill_between(x, bands[:, 1], bands[:, 2], color=st["color"], alpha=0.18, linewidth=0)
            theory = _per_layer([(g.get("theory") or {}) for g in group], key)
            if theory:
                ax.plot(x, [_centre_and_band([r[k] for r in theory])[0] for k in range(len(x))],
                        color="0.1", linestyle=(0, (1, 1.5)), linewidth=1.4, zorder=5,
                        label="mean-field theory" if i == n - 1 else None)
        if key == "layer_sv_mean":
            ax.set_ylim(0, max(1.0, ax.get_ylim()[1]))
        else:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        last = first + max(len(r) for g in signals for r in _per_layer(g, key)) - 1
        ticks = np.unique(np.linspace(first, last, min(last - first + 1, 7)).round().astype(int))
        ax.set_xticks(ticks, [f"fc{t + 1}" for t in ticks])
        ax.set_xlabel("layer (input → output)")
    handles = {h.get_label(): h for a in fig.axes for h in a.get_lines() if not h.get_label().startswith("_")}
    ax.legend(handles=list(handles.values()), fontsize=8,
              **({"loc": "upper left", "bbox_to_anchor": (1.02, 1),
                  "ncol": _legend_columns(series)} if legend_w else {}))
    suptitle(fig, "The claim per layer at init: measured (geometric mean over the seeds where it is "
             "nonzero, band ± 1 std of log10) and mean-field theory (dotted)" + _subtitle(shared),
             fontsize=11)
    return save(fig, path, dpi)


@dataclass(frozen=True)
class PhaseGrid:
    """A sweep over sigma_w^2 x sigma_b^2 as :func:`phase_map` draws it: ``log2_factor``
    (rows: sigma_b2, columns: sigma_w2; NaN where a group has no number) and theory's edge of
    chaos per sigma_b^2 row (its sigma_w^2; a ``line`` activation's at every q; None: none)."""

    sigma_w2: list[float]
    sigma_b2: list[float]
    log2_factor: np.ndarray
    edge: dict[float, tuple[str, float] | None]


def _experiment(summary: dict) -> dict:
    """A job's config but for the init (which sets sigma_w^2 and sigma_b^2) and its seed."""
    return {k: v for k, v in (summary.get("config") or {}).items() if k not in ("init", "seed")}


def phase_grid(series: list[Series]) -> PhaseGrid | None:
    """The grid of a sweep over sigma_w^2 x sigma_b^2, from its groups' init_signal, or None
    unless it is one: two values of each at least, one group a grid point, and groups that
    differ in their init alone (not a second activation or depth under one edge of chaos)."""
    points: dict[tuple[float, float], list] = {}
    experiments = []
    for s in series:
        jobs, theory, factors = [], [], []
        for j in s.finished_jobs:
            block = init_signal(j)  # parsed once
            if ((block.get("theory") or {}).get("sigma_w2")) is None:
                continue
            jobs.append(j)
            theory.append(block["theory"])
            g = block.get("grad_factor")
            if isinstance(g, (int, float)) and g > 0 and math.isfinite(g):
                factors.append(g)
        if not jobs:
            continue  # no number for it: its cell, if another group names it, stays blank
        if not all(isinstance(t.get(k), (int, float)) for t in theory for k in ("sigma_w2", "sigma_b2")):
            return None
        key = (round(theory[0]["sigma_w2"], 9), round(theory[0]["sigma_b2"], 9))
        if key in points:
            return None  # two groups on one point: it is not a sweep of sigma_w^2 x sigma_b^2 alone
        experiments.append(_experiment(jobs[0].summary))
        critical = theory[0].get("critical") or {}
        log2_factor = statistics.fmean(map(math.log2, factors)) if factors else math.nan  # geometric
        points[key] = [log2_factor, (critical["kind"], critical["sigma_w2"])
                       if critical.get("kind") in ("point", "line") else None]
    sigma_w2 = sorted({w for w, _ in points})
    sigma_b2 = sorted({b for _, b in points})
    if len(sigma_w2) < 2 or len(sigma_b2) < 2 or any(e != experiments[0] for e in experiments):
        return None
    grid = np.full((len(sigma_b2), len(sigma_w2)), np.nan)
    edge: dict[float, tuple[str, float] | None] = {}
    for (w, b), (log2_factor, critical) in points.items():
        grid[sigma_b2.index(b), sigma_w2.index(w)] = log2_factor
        edge[b] = critical
    return PhaseGrid(sigma_w2, sigma_b2, grid, edge)


def _cell_edges(values: list[float]) -> np.ndarray:
    """Edges of cells centred on sorted grid values (midpoints; the ends mirror them)."""
    v = np.asarray(values, dtype=float)
    mid = (v[:-1] + v[1:]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def phase_map(series: list[Series], shared: str, path: Path, dpi: int) -> Path | None:
    """A sweep over sigma_w^2 x sigma_b^2 (:func:`phase_grid`): the measured gradient factor
    per layer on the grid, blue where gradients vanish toward the input (ordered), red where
    they explode (chaotic), under mean-field theory's edge of chaos (chi_1 = 1)."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patheffects import withStroke
    from matplotlib.ticker import MaxNLocator

    g = phase_grid(series)
    if g is None:
        return None
    fig, gs = figure(7.4, 5.6, 1, 1, top=0.95, right=1.6, bottom=1.1, left=0.9)
    ax = fig.add_subplot(gs[0])
    ax.grid(False)
    finite = g.log2_factor[np.isfinite(g.log2_factor)]
    reach = max(0.05, float(np.abs(finite).max())) if finite.size else 1.0
    x_edges, y_edges = _cell_edges(g.sigma_w2), _cell_edges(g.sigma_b2)
    mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(g.log2_factor), cmap="RdBu_r",
                         norm=TwoSlopeNorm(0.0, -reach, reach), shading="flat")
    for (r, c), v in np.ndenumerate(g.log2_factor):
        dark = math.isfinite(v) and abs(v) > 0.6 * reach
        ax.text(g.sigma_w2[c], g.sigma_b2[r], "–" if not math.isfinite(v) else f"×{2 ** v:.2f}",
                ha="center", va="center", fontsize=7, zorder=6, color="white" if dark else "0.1",
                path_effects=[withStroke(linewidth=2, foreground="0.1" if dark else "white")])
    # Theory's edge, row by row: a point (broken where a row has none) or, for a ReLU-like
    # activation, one sigma_w^2 at every q and bias (a vertical line).
    points = [(e[1] if e and e[0] == "point" else math.nan, b) for b, e in sorted(g.edge.items())]
    if any(math.isfinite(w) for w, _ in points):
        ax.plot(*zip(*points), color="0.05", linewidth=2, marker="o", markersize=4, zorder=5,
                label="mean-field edge of chaos (χ₁ = 1)")
    lines = {e[1] for e in g.edge.values() if e and e[0] == "line"}
    for w in lines:
        ax.axvline(w, color="0.05", linewidth=2, zorder=5, label="edge of chaos (χ₁ = 1 at every q)")
    if ax.get_legend_handles_labels()[0]:
        fig.legend(loc="lower center", bbox_to_anchor=(0.45, 0.01), fontsize=8, frameon=False)
    ax.set_xlim(x_edges[[0, -1]])
    ax.set_ylim(y_edges[[0, -1]])
    ax.set_xticks(g.sigma_w2, [f"{v:g}" for v in g.sigma_w2])
    ax.set_yticks(g.sigma_b2, [f"{v:.3g}" for v in g.sigma_b2])
    ax.set_xlabel("σ_w² (weight variance × fan-in)")
    ax.set_ylabel("σ_b² (bias variance)")
    bar = colorbar_beside(fig, mesh, gs, "measured gradient factor per layer (toward the input)")
    ticks = [t for t in MaxNLocator(7, symmetric=True).tick_values(-reach, reach) if abs(t) <= reach]
    bar.set_ticks(ticks, labels=[f"×{2 ** t:.3g}" for t in ticks])
    seeds = max(len(s.finished_jobs) for s in series)
    subtitle = textwrap.fill(_subtitle(shared).strip(), 100)
    suptitle(fig, "Phase diagram at init: ordered (blue: gradients vanish toward the input)\nand "
             "chaotic (red: they explode)" + (f"; geometric mean of {seeds} seeds" if seeds > 1 else "")
             + (f"\n{subtitle}" if subtitle else ""), fontsize=11)
    return save(fig, path, dpi)


def init_signal(job) -> dict:
    """A job's init_signal as a dict, parsed once (a group record keeps it as text)."""
    block = job.summary.get("init_signal") or {}
    return block.value() if isinstance(block, LazyJSON) else block


def _claim_signal(job) -> dict:
    """What the claim figure reads of a job's init_signal: of 100,000 jobs, small lists."""
    block = init_signal(job)
    if not block:
        return {}
    theory = block.get("theory") or {}
    return {"q": block.get("q"), "grad_sq": block.get("grad_sq"), "born_dead": block.get("born_dead"),
            "jacobian": {"layer_sv_mean": (block.get("jacobian") or {}).get("layer_sv_mean")},
            "theory": {"q": theory.get("q"), "grad_sq": theory.get("grad_sq")}}


def _nonzero(jobs, alive) -> str:
    """': alive nets k of n' where some of a series' nets are born dead or have no gradient
    (the geometric means average the others)."""
    k = sum(1 for j in jobs if alive(j))
    return f": alive nets {k} of {len(jobs)}" if 0 < k < len(jobs) else ""


def _per_layer(signals: list[dict], key: str) -> list[list]:
    """Each job's per-layer list ``key`` of init_signal (or its jacobian block)."""
    rows = [g.get(key) or (g.get("jacobian") or {}).get(key) for g in signals]
    return [r for r in rows if isinstance(r, list) and r]


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
    for ax in axes[0]:
        ax.set_ylabel("binary cross-entropy")
        if spans_decades(losses, 2):  # a log axis keeps the small losses readable
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
    """Dots at the mean ± 1 std and one small dot per seed, on an axis zoomed to the data."""
    n = len(series)
    rows = []  # (y, series index, split, marker, alpha, values)
    for i, s in enumerate(series):
        for k, (split, marker, alpha) in enumerate(SPLIT_MARKS):
            values = [j.final(split, "acc") for j in s.finished_jobs]
            rows.append((i + (k - 0.5) * 0.36, i, split, marker, alpha,
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
    for y, i, split, marker, alpha, values in rows:
        if not values.size:
            continue
        st = series_style(i)
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
    """Draw the figures in ``names`` the jobs have data for; the files written."""
    style()
    draw = {"claim": claim, "phase_map": phase_map, "grad_norm_by_layer": grad_norm_by_layer,
            "loss_accuracy": loss_accuracy, "final_accuracy": final_accuracy}
    written = [draw[name](series, shared, out_dir / f"{name}.{fmt}", dpi)
               for name in COMPARISON_FIGURES if name in names]
    return [p for p in written if p is not None]
