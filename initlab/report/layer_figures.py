"""Per-layer figures of how one run evolved, drawn from its record.

- activation statistics over log epochs (mean +- std, std, fraction zero / saturated);
- activation histograms per hidden layer as heat-maps over log epochs;
- weight distribution (quantile fan) per weight matrix over log epochs;
- gradient norm per layer and epoch as a heat-map, for deep nets only (> 8 layers),
  where one line per parameter is no longer readable;
- the decision boundary at several log epochs (small multiples).

Style, palette and the log-axis helpers live in :mod:`initlab.report.figures`.
"""

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib import colors as mcolors
from matplotlib import pyplot as plt
from matplotlib.ticker import MaxNLocator

from initlab.record import EPOCH_CHECKPOINTS, RunRecord, layer_number, layer_of
from initlab.report.figures import (
    PALETTE,
    _save,
    draw_probability,
    layer_colors,
    load_model,
    plane_grid,
    run_title,
    scatter_classes,
)

# A heat-map for gradient norms replaces per-parameter lines beyond this many layers.
DEEP_NET_LAYERS = 8
# Re-binned activation histograms: rows of the heat-map per layer.
HEATMAP_BINS = 60
# Fractions below this are drawn as empty, so one stray value does not set the colour scale.
HEATMAP_MIN_FRACTION = 1e-4


def _grid(n_panels: int, max_cols: int = 4, panel_w: float = 3.4, panel_h: float = 2.8,
          **kw):
    """A figure of ``n_panels`` small multiples; unused axes are hidden."""
    cols = min(n_panels, max_cols)
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel_w * cols + 1.2, panel_h * rows + 0.9),
                             squeeze=False, constrained_layout=True, **kw)
    flat = list(axes.flat)
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def _spans_decades(values: list[float], decades: float = 2) -> bool:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return bool(positive) and max(positive) / min(positive) > 10**decades


def _by_layer(rows: list[dict], key: str) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        grouped[row[key]].append(row)
    return dict(grouped)


# ------------------------------------------------------------ activation statistics
def activation_stats_over_time(record: RunRecord, path: Path, dpi: int) -> Path:
    """Per hidden layer over log epochs: mean +- std, std alone, fraction exactly zero and,
    for bounded activations, fraction saturated."""
    layers = _by_layer(record.activations, "layer")
    names = list(layers)
    colors = dict(zip(names, layer_colors(len(names)), strict=True))
    bounded = any(not math.isnan(a["frac_saturated"]) for a in record.activations)
    panels = ["mean", "std", "frac_zero"] + (["frac_saturated"] if bounded else [])
    fig, axes = _grid(len(panels), max_cols=2 if len(panels) == 4 else 3, panel_w=4.2,
                      panel_h=3.2)
    marker = "o" if max(len(rows) for rows in layers.values()) <= 12 else None
    for ax, panel in zip(axes, panels, strict=True):
        for name, rows in layers.items():
            epochs = [r["epoch"] for r in rows]
            c = colors[name]
            if panel == "mean":
                mean = np.array([r["mean"] for r in rows])
                std = np.array([r["std"] for r in rows])
                ax.plot(epochs, mean, color=c, marker=marker, markersize=3, label=name)
                ax.fill_between(epochs, mean - std, mean + std, color=c, alpha=0.15, linewidth=0)
            else:
                ax.plot(epochs, [r[panel] for r in rows], color=c, marker=marker, markersize=3,
                        label=name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    titles = {
        "mean": ("Mean ± 1 std", "activation"),
        "std": ("Standard deviation", "std of activation"),
        "frac_zero": ("Fraction exactly zero", "fraction of activations"),
        "frac_saturated": ("Fraction saturated (|a| > 0.97 of range)", "fraction of activations"),
    }
    for ax, panel in zip(axes, panels, strict=True):
        title, ylabel = titles[panel]
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        if panel.startswith("frac"):
            ax.set_ylim(-0.03, 1.03)
        if panel == "std" and _spans_decades([a["std"] for a in record.activations]):
            ax.set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="hidden layer", loc="outside right upper", fontsize=8)
    fig.suptitle(f"Hidden activations on the training set\n{run_title(record)}", fontsize=10)
    return _save(fig, path, dpi)


# ------------------------------------------------------------ activation histograms
def rebin(low: float, high: float, counts: list[float], edges: np.ndarray) -> np.ndarray:
    """Counts of a histogram over [low, high] redistributed onto ``edges``.

    Counts are taken as spread evenly within each source bin (the CDF is interpolated
    linearly); a histogram of zero width puts every count in the bin holding ``low``.
    """
    counts = np.asarray(counts, dtype=float)
    if not (math.isfinite(low) and math.isfinite(high)):
        return np.zeros(len(edges) - 1)
    if high <= low:
        out = np.zeros(len(edges) - 1)
        i = int(np.clip(np.searchsorted(edges, low, side="right") - 1, 0, len(out) - 1))
        out[i] = counts.sum()
        return out
    source_edges = np.linspace(low, high, len(counts) + 1)
    cdf = np.concatenate(([0.0], np.cumsum(counts)))
    return np.diff(np.interp(edges, source_edges, cdf))


def activation_histograms(record: RunRecord, path: Path, dpi: int) -> Path | None:
    """Heat-map per hidden layer: log epochs across, activation value up, colour = share of
    the layer's activations in that value bin (log scale)."""
    hists: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in record.activation_hists:
        hists[row["layer"]][row["epoch"]].append(row)
    if not hists:
        return None
    fig, axes = _grid(len(hists), panel_w=3.2, panel_h=2.9)
    norm = mcolors.LogNorm(vmin=HEATMAP_MIN_FRACTION, vmax=1)
    cmap = plt.get_cmap("viridis")
    mesh = None
    for ax, (layer, by_epoch) in zip(axes, hists.items(), strict=True):
        epochs = sorted(by_epoch)
        bounds = [(rows[0]["low"], rows[-1]["high"]) for rows in by_epoch.values()]
        finite = [v for lo_hi in bounds for v in lo_hi if math.isfinite(v)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        if hi - lo < 1e-12:  # constant activations: give the single value some room
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, HEATMAP_BINS + 1)
        columns = []
        for e in epochs:
            rows = sorted(by_epoch[e], key=lambda r: r["bin"])
            counts = rebin(rows[0]["low"], rows[-1]["high"], [r["count"] for r in rows], edges)
            total = counts.sum()
            columns.append(counts / total if total > 0 else counts)
        share = np.ma.masked_less(np.array(columns).T, HEATMAP_MIN_FRACTION)
        mesh = ax.pcolormesh(np.arange(len(epochs) + 1), edges, share, cmap=cmap, norm=norm)
        step = max(1, math.ceil(len(epochs) / 6))
        ticks = list(range(0, len(epochs), step))
        if ticks[-1] != len(epochs) - 1:
            ticks.append(len(epochs) - 1)
        ax.set_xticks([t + 0.5 for t in ticks], [str(epochs[t]) for t in ticks])
        ax.set_title(layer, fontsize=10)
        ax.set_xlabel("epoch (log epochs)")
        ax.set_ylabel("activation value")
        ax.grid(False)
    fig.colorbar(mesh, ax=axes, label="share of the layer's activations", shrink=0.9)
    fig.suptitle(f"Activation histograms per hidden layer over training\n{run_title(record)}",
                 fontsize=10)
    return _save(fig, path, dpi)


# --------------------------------------------------------------- weight distribution
def weight_distribution(record: RunRecord, path: Path, dpi: int) -> Path | None:
    """Quantile fan per weight matrix over log epochs: min-max, 5-95 %, 25-75 %, median."""
    params = _by_layer(record.weight_stats, "param")
    if not params:
        return None
    fig, axes = _grid(len(params), panel_w=3.3, panel_h=2.6)
    c = PALETTE[0]
    bands = (("min", "max", 0.12, "min–max"), ("p05", "p95", 0.22, "5–95 %"),
             ("p25", "p75", 0.38, "25–75 %"))
    marker = "o" if max(len(rows) for rows in params.values()) <= 12 else None
    for ax, (name, rows) in zip(axes, params.items(), strict=True):
        epochs = [r["epoch"] for r in rows]
        for lo, hi, alpha, label in bands:
            ax.fill_between(epochs, [r[lo] for r in rows], [r[hi] for r in rows], color=c,
                            alpha=alpha, linewidth=0, label=label)
        ax.plot(epochs, [r["p50"] for r in rows], color=c, marker=marker, markersize=3,
                label="median")
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("weight value")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    fig.suptitle(f"Weight distribution per layer over training\n{run_title(record)}",
                 fontsize=10)
    return _save(fig, path, dpi)


# ------------------------------------------------------------ gradient-norm heat-map
def grad_norm_heatmap(record: RunRecord, path: Path, dpi: int) -> Path | None:
    """Mean weight-gradient L2 norm per layer (rows, input at the top) and epoch (columns),
    log colour scale; exact zeros are hatched."""
    sums: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0])
    for row in record.grad_norms:
        if row["param"].endswith("weight"):
            acc = sums[(layer_of(row["param"]), row["epoch"])]
            acc[0] += row["norm"]
            acc[1] += 1
    layers = sorted({layer for layer, _ in sums}, key=layer_number)
    epochs = sorted({e for _, e in sums})
    if not layers or not epochs:
        return None
    grid = np.full((len(layers), len(epochs)), np.nan)
    li, ei = {n: i for i, n in enumerate(layers)}, {e: i for i, e in enumerate(epochs)}
    for (layer, epoch), (total, n) in sums.items():
        grid[li[layer], ei[epoch]] = total / n
    positive = grid[np.isfinite(grid) & (grid > 0)]
    fig, ax = plt.subplots(figsize=(min(12, 5 + 0.04 * len(epochs)), 1.2 + 0.32 * len(layers)),
                           constrained_layout=True)
    # Zeros are masked: the hatched axes background shows through those cells.
    ax.patch.set_hatch("///")
    ax.patch.set_edgecolor("0.75")
    masked = np.ma.masked_where(~np.isfinite(grid) | (grid <= 0), grid)
    vmin, vmax = (positive.min(), positive.max()) if positive.size else (1e-12, 1)
    if vmax <= vmin:
        vmin, vmax = vmin / 10, vmax * 10
    edges_x = np.concatenate(([epochs[0] - 0.5], np.asarray(epochs, dtype=float) + 0.5))
    mesh = ax.pcolormesh(edges_x, np.arange(len(layers) + 1), masked, cmap="viridis",
                         norm=mcolors.LogNorm(vmin=vmin, vmax=vmax))
    ax.set_yticks(np.arange(len(layers)) + 0.5, layers)
    ax.invert_yaxis()
    ax.set_xlabel("epoch")
    ax.set_ylabel("layer (input at top)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(False)
    zero_note = ", hatched = exactly 0" if (np.isfinite(grid) & (grid == 0)).any() else ""
    fig.colorbar(mesh, ax=ax, label="mean gradient L2 norm in epoch")
    ax.set_title(f"Weight-gradient norm by layer and epoch (log colour{zero_note})\n"
                 f"{run_title(record)}", fontsize=10)
    return _save(fig, path, dpi)


# ------------------------------------------------------- decision boundary over time
def decision_boundary_over_epochs(record: RunRecord, path: Path, dpi: int) -> Path | None:
    """P(class 1) over the plane at the log epochs kept in checkpoints/epochs.pt."""
    ckpt, data_path = record.run_dir / EPOCH_CHECKPOINTS, record.run_dir / "data.pt"
    if not ckpt.exists() or not data_path.exists():
        return None
    import torch

    states = torch.load(ckpt, weights_only=True)
    data = torch.load(data_path, weights_only=True)
    if not states or data["X_train"].shape[1] != 2:
        return None
    gx, gy = plane_grid(data, n=120)
    dev_acc = {m["epoch"]: m["dev_acc"] for m in record.metrics}
    epochs = sorted(states)
    fig, axes = _grid(len(epochs), max_cols=3, panel_w=3.2, panel_h=3.0, sharex=True,
                      sharey=True)
    mesh = None
    for ax, epoch in zip(axes, epochs, strict=True):
        mesh = draw_probability(ax, load_model(record, states[epoch]), gx, gy)
        scatter_classes(ax, data["X_train"], data["y_train"], "train", size=6)
        where = "at init" if epoch == 0 else f"dev acc {dev_acc[epoch]:.2f}" \
            if epoch in dev_acc else ""
        ax.set_title(f"epoch {epoch}" + (f" ({where})" if where else ""), fontsize=10)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_aspect("equal")
        ax.grid(False)
        ax.label_outer()
    fig.colorbar(mesh, ax=axes, label="P(class 1)", shrink=0.7)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8, markerscale=2.5)
    fig.suptitle(f"Decision boundary during training\n{run_title(record)}", fontsize=10)
    return _save(fig, path, dpi)


def render_layer_figures(record: RunRecord, fmt: str = "png", dpi: int = 120) -> list[Path]:
    """Draw every per-layer figure the record has data for; returns the files written."""
    out = record.figures_dir
    written: list[Path | None] = []
    if record.activations:
        written.append(activation_stats_over_time(record, out / f"activation_stats.{fmt}", dpi))
    if record.activation_hists:
        written.append(activation_histograms(record, out / f"activation_histograms.{fmt}", dpi))
    if record.weight_stats:
        written.append(weight_distribution(record, out / f"weight_distribution.{fmt}", dpi))
    n_layers = len({layer_of(p) for p in record.param_names})
    if record.grad_norms and n_layers > DEEP_NET_LAYERS:
        written.append(grad_norm_heatmap(record, out / f"grad_norm_heatmap.{fmt}", dpi))
    written.append(
        decision_boundary_over_epochs(record, out / f"decision_boundary_epochs.{fmt}", dpi)
    )
    return [p for p in written if p is not None]
