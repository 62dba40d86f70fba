"""Overlay figures of a sweep, one line (or band) per job or seed group, drawn from the
jobs' records as read by :mod:`initlab.report.compare`:

- ``grad_norm_by_layer``: the textbook figure, weight-gradient L2 norm per layer on a log
  scale at the first step (and the last step when the jobs took more than one);
- ``loss_accuracy``: train and dev loss and accuracy over epochs;
- ``final_accuracy``: final (best-on-dev) dev and test accuracy per job.

A series holding several seeds is drawn as its mean with a band of one standard
deviation (for gradient norms: the geometric mean, the band one std of the log).
Series keep one colour across the three figures.
"""

import math
from pathlib import Path

import numpy as np
from matplotlib import pyplot as plt  # noqa: E402,I001  (after figures selected the backend)
from matplotlib.ticker import MaxNLocator

from initlab.record import layer_number
from initlab.report.compare import Series
from initlab.report.figures import PALETTE, _log_floor, _save, _style, plot_log_values

LINESTYLES = ("-", "--", ":", "-.")  # after every palette colour is used once


def series_style(i: int) -> dict:
    return {"color": PALETTE[i % len(PALETTE)], "linestyle": LINESTYLES[(i // len(PALETTE)) % 4]}


def _legend(ax_or_fig, n: int, **kw) -> None:
    # Beyond a handful of series, the legend goes outside the axes so no line is hidden.
    if n > 6:
        ax_or_fig.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, **kw)
    else:
        ax_or_fig.legend(fontsize=8, **kw)


def _missing_note(fig, series: list[Series], has_data) -> None:
    """Name the jobs that have nothing to draw, so a failed job is not silently absent."""
    missing = [f"job {j.name} ({j.label}): {j.status}" for s in series for j in s.jobs
               if not has_data(j)]
    if missing:
        shown = "; ".join(missing[:4]) + (f"; and {len(missing) - 4} more" if len(missing) > 4
                                          else "")
        fig.text(0.01, -0.02, f"Not shown: {shown}", fontsize=8, color="0.35", ha="left",
                 va="top", wrap=True)


def _subtitle(shared: str) -> str:
    return f"\nevery job: {shared}" if shared else ""


# -------------------------------------------------------------- gradient norm by layer
def _layer_values(series: Series, attr: str, layers: list[str]):
    """Per layer: values of every job of the series that has that layer (weights)."""
    per_layer = []
    for layer in layers:
        per_layer.append([getattr(j, attr)[f"{layer}.weight"] for j in series.jobs
                          if f"{layer}.weight" in getattr(j, attr)])
    return per_layer


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
    every = [v for s in series for j in s.jobs for d in (j.grad_first, j.grad_last)
             for v in d.values()]
    floor = _log_floor(every)
    fig, axes = plt.subplots(1, len(moments), figsize=(6.4 * len(moments), 4.6), squeeze=False,
                             sharey=True, constrained_layout=True)
    x = np.arange(len(layers))
    for ax, (attr, moment) in zip(axes[0], moments, strict=True):
        n_zero_lines = 0
        for i, s in enumerate(series):
            per_layer = _layer_values(s, attr, layers)
            if not any(per_layer):
                continue
            style = series_style(i)
            centre, low, high = [], [], []
            for values in per_layer:
                if not values:
                    centre.append(math.nan)
                    low.append(math.nan)
                    high.append(math.nan)
                elif all(v == 0 for v in values):
                    centre.append(0.0)  # drawn at the floor and marked "= 0"
                    low.append(math.nan)
                    high.append(math.nan)
                else:
                    logs = np.log10([max(v, floor) for v in values])
                    m, sd = logs.mean(), logs.std()
                    centre.append(10**m)
                    low.append(10 ** (m - sd))
                    high.append(10 ** (m + sd))
            has_zero = any(v == 0 for v in centre)
            plot_log_values(ax, x, centre, floor, style["color"],
                            zero_label_dy=4 + 10 * n_zero_lines, linestyle=style["linestyle"],
                            marker="o", label=s.label)
            n_zero_lines += has_zero
            if len(s.jobs) > 1:
                ax.fill_between(x, low, high, color=style["color"], alpha=0.18, linewidth=0)
        ax.set_yscale("log")
        ax.set_xticks(x, layers, rotation=45 if len(layers) > 10 else 0)
        ax.set_xlabel("layer (input → output)")
        ax.set_title(moment, fontsize=10)
    axes[0][0].set_ylabel("gradient L2 norm of the layer's weights")
    _legend(axes[0][-1], len(series))
    band = (" (geometric mean across seeds, band ± 1 std of log10)"
            if any(len(s.jobs) > 1 for s in series) else "")
    fig.suptitle("Gradient norm by layer" + band + _subtitle(shared), fontsize=11)
    _missing_note(fig, series, lambda j: bool(j.grad_first))
    return _save(fig, path, dpi)


# ------------------------------------------------------------- loss and accuracy curves
def _mean_curve(jobs, key: str):
    """Epochs, mean and std over the jobs that reached each epoch."""
    by_epoch: dict[int, list[float]] = {}
    for j in jobs:
        for m in j.metrics:
            by_epoch.setdefault(m["epoch"], []).append(m[key])
    epochs = sorted(by_epoch)
    values = [np.array(by_epoch[e], dtype=float) for e in epochs]
    mean = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in values])
    std = np.array([np.nanstd(v) if np.isfinite(v).any() else np.nan for v in values])
    return np.array(epochs), mean, std


def loss_accuracy(series: list[Series], shared: str, path: Path, dpi: int) -> Path | None:
    if not any(j.metrics for s in series for j in s.jobs):
        return None
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True, constrained_layout=True)
    panels = (("train_loss", "train loss"), ("dev_loss", "dev loss"),
              ("train_acc", "train accuracy"), ("dev_acc", "dev accuracy"))
    losses = []
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for i, s in enumerate(series):
            jobs = [j for j in s.jobs if j.metrics]
            if not jobs:
                continue
            epochs, mean, std = _mean_curve(jobs, key)
            style = series_style(i)
            ax.plot(epochs, mean, label=s.label, marker="o" if len(epochs) < 4 else None,
                    **style)
            if len(jobs) > 1:
                ax.fill_between(epochs, mean - std, mean + std, color=style["color"],
                                alpha=0.18, linewidth=0)
            if key.endswith("loss"):
                losses.extend(mean[np.isfinite(mean)].tolist())
        ax.set_title(title, fontsize=10)
    ratio = max(losses) / min(losses) if losses and min(losses) > 0 else 1
    for ax in axes[0]:
        ax.set_ylabel("binary cross-entropy")
        if ratio > 100:  # loss spanning decades: a log axis keeps the small ones readable
            ax.set_yscale("log")
    all_epochs = sorted({m["epoch"] for s in series for j in s.jobs for m in j.metrics})
    for ax in axes[1]:
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("epoch")
        if len(all_epochs) <= 10:  # few epochs: tick each one, never 0.96 .. 1.04
            ax.set_xticks(all_epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(axes[0][1], len(series))
    band = " (mean ± 1 std across seeds)" if any(len(s.jobs) > 1 for s in series) else ""
    fig.suptitle("Loss and accuracy" + band + _subtitle(shared), fontsize=11)
    _missing_note(fig, series, lambda j: bool(j.metrics))
    return _save(fig, path, dpi)


# ------------------------------------------------------------------ final accuracies
def final_accuracy(series: list[Series], shared: str, path: Path, dpi: int) -> Path:
    n = len(series)
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.55 * n), constrained_layout=True)
    y = np.arange(n)
    height = 0.38
    for i, s in enumerate(series):
        style = series_style(i)
        finished = s.finished_jobs
        if not finished:
            status = ", ".join(sorted({j.status for j in s.jobs}))
            ax.text(0.01, i, status, va="center", fontsize=9, color="#D55E00",
                    fontweight="bold")
            continue
        for offset, split, alpha, hatch in ((-height / 2, "dev", 0.45, "//"),
                                            (height / 2, "test", 0.95, None)):
            values = [j.final(split, "acc") for j in finished]
            values = [v for v in values if math.isfinite(v)]
            if not values:
                continue
            mean = float(np.mean(values))
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            ax.barh(i + offset, mean, height=height, color=style["color"], alpha=alpha,
                    hatch=hatch, edgecolor="white", xerr=std if len(values) > 1 else None,
                    error_kw={"ecolor": "0.2", "capsize": 3, "linewidth": 1})
            if len(values) > 1:
                ax.scatter(values, [i + offset] * len(values), s=10, color="0.15", zorder=3)
            ax.text(min(mean + std, 1.0) + 0.01, i + offset, f"{mean:.3f}", va="center",
                    fontsize=8)
    ax.set_yticks(y, [s.label for s in series])
    ax.set_ylim(n - 0.5, -0.5)  # first job on top; rows without bars keep their room
    ax.set_xlim(0, 1.1)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("accuracy of the best-on-dev model (dotted: chance)")
    ax.grid(axis="y", visible=False)
    from matplotlib.patches import Patch

    legend = [Patch(facecolor="0.5", alpha=0.45, hatch="//", edgecolor="white", label="dev"),
              Patch(facecolor="0.5", alpha=0.95, label="test")]
    ax.legend(handles=legend, loc="lower right", fontsize=8, framealpha=0.9, frameon=True)
    seeds = " (mean ± 1 std, dots = seeds)" if any(len(s.jobs) > 1 for s in series) else ""
    ax.set_title("Final dev and test accuracy" + seeds + _subtitle(shared), fontsize=11)
    return _save(fig, path, dpi)


def render_comparison_figures(series: list[Series], shared: str, out_dir: Path,
                              fmt: str = "png", dpi: int = 120) -> list[Path]:
    """Draw every comparison figure the jobs have data for; returns the files written."""
    _style()
    written = [
        grad_norm_by_layer(series, shared, out_dir / f"grad_norm_by_layer.{fmt}", dpi),
        loss_accuracy(series, shared, out_dir / f"loss_accuracy.{fmt}", dpi),
        final_accuracy(series, shared, out_dir / f"final_accuracy.{fmt}", dpi),
    ]
    return [p for p in written if p is not None]
