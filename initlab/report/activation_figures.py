"""Hidden activations (activations.csv, activation_hists.csv): statistics per layer and
histograms over log epochs; a deep net gets heat maps and a few evenly spaced layers."""

import math
from pathlib import Path

import numpy as np
from matplotlib import colors as mcolors

from initlab.record import RunRecord, layer_number
from initlab.report.plotting import (
    DEEP_NET_LAYERS,
    SHOWN_LAYERS,
    by_row_and_epoch,
    colorbar_beside,
    epoch_axis,
    evenly_spaced,
    figure,
    hatch_background,
    label_layers,
    layer_colors,
    log_axes,
    mark_non_finite,
    mark_non_finite_cells,
    markevery,
    note_non_finite,
    run_title,
    save,
    series_style,
    set_value_limits,
    spans_decades,
    suptitle,
)

# Re-binned activation histograms: rows of the heat map per layer.
HEATMAP_BINS = 60
# Fractions below this are drawn as empty, so one stray value does not set the colour scale.
HEATMAP_MIN_FRACTION = 1e-4
STATS = ("mean", "std", "frac_zero", "frac_saturated")
TITLES = {
    "mean": ("Mean ± 1 std (band within the observed min–max)", "activation"),
    "std": ("Standard deviation", "std of activation"),
    "frac_zero": ("Fraction exactly zero", "fraction of activations"),
    "frac_saturated": ("Fraction saturated (|a| > 0.97 of range)", "fraction of activations"),
}


def activation_stats(record: RunRecord) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Layers (depth order), log epochs, and each statistic as a [layer, epoch] matrix."""
    return by_row_and_epoch(record.activations, "layer", STATS, layer_number)


# ------------------------------------------------------------ activation statistics
def activation_stats_over_time(record: RunRecord, path: Path, dpi: int) -> Path:
    """Per hidden layer over log epochs: mean +- std, std alone, fraction exactly zero and,
    for bounded activations, fraction saturated."""
    layers, epochs, stats = activation_stats(record)
    # Mean ± std of a skewed activation (ReLU) reaches values no unit took (below 0): the
    # band is clipped to each layer's observed min and max (activation_hists.csv's range).
    hists = _histograms(record) if record.activation_hists else {}
    low, high = stats["mean"] - stats["std"], stats["mean"] + stats["std"]
    for i, name in enumerate(layers):
        for j, e in enumerate(epochs):
            if int(e) in hists.get(name, {}):
                lo, hi, _ = hists[name][int(e)]
                low[i, j], high[i, j] = max(low[i, j], lo), min(high[i, j], hi)
    bounded = bool(np.isfinite(stats["frac_saturated"]).any())
    panels = [s for s in STATS if s != "frac_saturated" or bounded]
    if len(layers) > DEEP_NET_LAYERS:
        return _activation_stats_heatmaps(record, layers, epochs, stats, panels, path, dpi)
    cols = 2 if len(panels) == 4 else 3
    n_rows = math.ceil(len(panels) / cols)
    fig, gs = figure(4.2 * cols + 1.4, 3.1 * n_rows + 1.0, n_rows, cols, top=0.95, left=0.95,
                     right=1.4, wspace=0.9, hspace=0.85)
    colors = dict(zip(layers, layer_colors(len(layers)), strict=True))
    marker = "o" if len(epochs) <= 12 else None
    first_ax = None
    for n, panel in enumerate(panels):
        cell = gs[n // cols, n % cols]
        values = stats[panel]
        log = None
        if panel == "std" and spans_decades(values, 2):
            zero_rows = [i for i in range(len(layers)) if (values[i] == 0).any()]
            log = log_axes(fig, cell, zero_rows=len(zero_rows))
            ax = log.ax
        else:
            ax = fig.add_subplot(cell)
        non_finite = 0
        for i, name in enumerate(layers):
            c, row = colors[name], values[i]
            # Layers often coincide (all dead, all saturated): shapes and widths tell them apart.
            kw = {**series_style(i, len(layers)), "color": c, "label": name,
                  "marker": series_style(i)["marker"] if marker else None,
                  "markevery": markevery(i, len(epochs), len(layers))}
            if log is not None:
                log.plot(epochs, row, row=zero_rows.index(i) if i in zero_rows else 0, **kw)
                continue
            ax.plot(epochs, row, **kw)
            non_finite += mark_non_finite(ax, epochs, row, c, shift=i)
            if panel == "mean":
                ax.fill_between(epochs, low[i], high[i], color=c, alpha=0.15, linewidth=0)
        title, ylabel = TITLES[panel]
        if log is not None:
            log.finish(f"{ylabel} (log)")
            non_finite = log.non_finite
        else:
            ax.set_ylabel(ylabel)
        note_non_finite(ax, non_finite)
        if non_finite:
            ax.legend(handles=[ax.get_legend_handles_labels()[0][-1]], fontsize=7, loc="lower left")
        if panel.startswith("frac"):
            ax.set_ylim(-0.03, 1.03)
        elif log is None:  # a tiny change must not fill the panel
            band = [values] if panel == "std" else [low, high]
            set_value_limits(ax, np.concatenate([b.ravel() for b in band]),
                             nonnegative=panel == "std")
        epoch_axis(log.strip if log is not None and log.strip is not None else ax, epochs)
        ax.set_title(title, fontsize=10)
        first_ax = first_ax or ax
    handles, labels = first_ax.get_legend_handles_labels()
    keep = [(h, lab) for h, lab in zip(handles, labels, strict=True) if lab in colors]
    fig.legend([h for h, _ in keep], [lab for _, lab in keep], title="hidden layer",
               loc="upper right", bbox_to_anchor=(1, 1 - 0.95 / fig.get_size_inches()[1]),
               fontsize=8)
    suptitle(fig, f"Hidden activations on the training set\n{run_title(record)}")
    return save(fig, path, dpi)


def _epoch_columns(ax, epochs) -> None:
    """Log epochs as equal-width columns, labelled with their epoch numbers."""
    step = max(1, math.ceil(len(epochs) / 6))
    ticks = list(range(0, len(epochs), step))
    if len(epochs) - 1 - ticks[-1] >= step / 2:  # the last epoch, unless it would crowd
        ticks.append(len(epochs) - 1)
    ax.set_xticks([t + 0.5 for t in ticks], [str(epochs[t]) for t in ticks])
    ax.set_xlabel("epoch (log epochs)")


def _activation_stats_heatmaps(record, layers, epochs, stats, panels, path, dpi) -> Path:
    """Deep nets: one heat map per statistic, layers down, log epochs across."""
    fig, gs = figure(3.4 * len(panels) + 1, min(2.9 + 0.08 * len(layers), 11), 1, len(panels),
                     top=0.8, bottom=0.4, wspace=0.35)
    axes = [fig.add_subplot(gs[0])]
    axes += [fig.add_subplot(gs[i], sharey=axes[0]) for i in range(1, len(panels))]
    for ax in axes[1:]:
        ax.tick_params(axis="y", labelleft=False)
    for ax, panel in zip(axes, panels, strict=True):
        values = stats[panel]
        finite = np.isfinite(values)
        ax.patch.set_facecolor("white")
        if panel == "std":
            positive = values[finite & (values > 0)]
            lo, hi = (positive.min(), positive.max()) if positive.size else (1e-2, 1e2)
            norm = mcolors.LogNorm(vmin=lo, vmax=max(hi, lo * 10))
            shown_values = np.ma.masked_where(~finite | (values <= 0), values)
            hatch_background(ax)
            label = "std (log colour" + ("; hatched = exactly 0)" if (values == 0).any() else ")")
        elif panel == "mean":
            bound = np.nanmax(np.abs(values[finite])) if finite.any() else 1.0
            norm = mcolors.Normalize(vmin=-bound or -1, vmax=bound or 1)
            shown_values = np.ma.masked_where(~finite, values)
            label = "mean activation"
        else:
            norm = mcolors.Normalize(vmin=0, vmax=1)
            shown_values = np.ma.masked_where(~finite, values)
            label = "fraction"
        cmap = "RdBu_r" if panel == "mean" else "viridis"
        edges = np.arange(len(epochs) + 1), np.arange(len(layers) + 1)
        mesh = ax.pcolormesh(*edges, shown_values, cmap=cmap, norm=norm)
        if mark_non_finite_cells(ax, *edges, finite):
            label += "; orange = NaN/Inf"
        bar = fig.colorbar(mesh, ax=ax, location="bottom", shrink=0.9, label=label, pad=0.12,
                           fraction=0.06, format=None if panel == "std" else "%.3g")
        if panel == "mean":  # three ticks: "-4e+17-2e+17" must not run together
            bar.set_ticks([norm.vmin, 0, norm.vmax])
        ax.set_title(TITLES[panel][0].split(" ±")[0], fontsize=10)
        _epoch_columns(ax, epochs)
        ax.grid(False)
    label_layers(axes[0], layers, "y", 20, 0.5)
    axes[0].set_ylim(len(layers), 0)
    axes[0].set_ylabel("hidden layer (input at top)")
    suptitle(fig, f"Hidden activations on the training set, {len(layers)} hidden layers\n"
                  f"{run_title(record)}")
    return save(fig, path, dpi)


# ------------------------------------------------------------ activation histograms
def rebin(low: float, high: float, counts: list[float], edges: np.ndarray) -> np.ndarray:
    """A histogram over [low, high] redistributed onto ``edges`` (counts spread evenly in
    each bin); one of zero width puts every count in the bin holding ``low``."""
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


def _histograms(record: RunRecord) -> dict[str, dict[int, tuple[float, float, np.ndarray]]]:
    """layer (in depth order) -> epoch -> (low, high, counts in bin order)."""
    rows: dict[str, dict[int, list]] = {}
    for r in sorted(record.activation_hists, key=lambda r: r["bin"]):
        rows.setdefault(r["layer"], {}).setdefault(r["epoch"], []).append(r)
    return {layer: {e: (rs[0]["low"], rs[-1]["high"], np.array([r["count"] for r in rs], dtype=float))
                    for e, rs in rows[layer].items()} for layer in sorted(rows, key=layer_number)}


def activation_histograms(record: RunRecord, path: Path, dpi: int) -> Path | None:
    """Heat map per hidden layer: log epochs across, activation value up, colour = share of
    the layer's activations in that value bin (log scale). Deep nets: a few layers."""
    hists = _histograms(record)
    if not hists:
        return None
    layers = evenly_spaced(list(hists), SHOWN_LAYERS) if len(hists) > DEEP_NET_LAYERS else list(hists)
    cols = min(len(layers), 3 if len(layers) in (5, 6) else 4)
    n_rows = math.ceil(len(layers) / cols)
    fig, gs = figure(3.2 * cols + 1.6, 2.9 * n_rows + 1.0, n_rows, cols, top=0.95, left=0.95,
                     right=1.3, wspace=0.85, hspace=0.9)
    flat = [fig.add_subplot(gs[i // cols, i % cols]) for i in range(len(layers))]
    norm = mcolors.LogNorm(vmin=HEATMAP_MIN_FRACTION, vmax=1)
    mesh = None
    for ax, layer in zip(flat, layers):
        by_epoch = hists[layer]
        epochs = sorted(by_epoch)
        finite = [v for e in epochs for v in by_epoch[e][:2] if math.isfinite(v)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        if hi - lo < 1e-12:  # constant activations: give the single value some room
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, HEATMAP_BINS + 1)
        columns = []
        for e in epochs:
            low, high, counts = by_epoch[e]
            moved = rebin(low, high, counts, edges)
            total = moved.sum()
            columns.append(moved / total if total > 0 else moved)
        share = np.ma.masked_less(np.array(columns).T, HEATMAP_MIN_FRACTION)
        mesh = ax.pcolormesh(np.arange(len(epochs) + 1), edges, share, cmap="viridis", norm=norm)
        _epoch_columns(ax, epochs)
        ax.set_title(layer, fontsize=10)
        ax.set_ylabel("activation value")
        ax.grid(False)
    colorbar_beside(fig, mesh, gs, "share of the layer's activations")
    which = (f" ({len(layers)} of {len(hists)} layers, evenly spaced)"
             if len(layers) < len(hists) else "")
    suptitle(fig, f"Activation histograms per hidden layer over training{which}\n"
                  f"{run_title(record)}")
    return save(fig, path, dpi)
