"""Weights: the initial weights against the shape of their scheme (checkpoints/init.pt),
their distribution per layer over training (weight_stats.csv), and every weight of a
small model over training (weights.csv).
"""

import math
from pathlib import Path

import numpy as np
from matplotlib.ticker import FuncFormatter, MaxNLocator

from initlab.custom import code_missing
from initlab.options import ACTIVATIONS, INITS, describe_init
from initlab.record import RunRecord, layer_number, layer_of
from initlab.report.plotting import (
    DEEP_NET_LAYERS,
    PALETTE,
    by_row_and_epoch,
    color,
    epoch_axis,
    figure,
    label_layers,
    layer_colors,
    run_config,
    run_title,
    save,
    set_value_limits,
    spans_decades,
    suptitle,
)
from initlab.view import config_view

# Draws from the scheme per layer: enough for its shape to show in a histogram.
SCHEME_DRAWS = 10_000
HIST_BINS = 41


def _layer_free(name: str | None) -> bool:
    """The scheme's distribution is the same for every layer (no fan in its formula)."""
    spec = INITS.get(name)
    return spec is not None and spec.layer_free


# ------------------------------------------------------------------- initial weights
def has_initial_weights(record: RunRecord) -> bool:
    # The fresh draws call a custom init (and a custom activation, for the gain): skipped
    # where its module does not import.
    return (record.run_dir / "checkpoints" / "init.pt").exists() and \
        not code_missing(run_config(record))


def scheme_draws(record: RunRecord, shapes: dict[str, tuple[int, ...]],
                 n: int = SCHEME_DRAWS) -> dict[str, np.ndarray]:
    """About ``n`` fresh draws per weight matrix from the run's own init function (same
    scheme, same shape, so the same fans), from a generator of its own."""
    import torch

    from initlab.init import init_weight_

    config = run_config(record)
    init, act = config.get("init", {}), config.get("act", {})
    init_cfg = config_view(init, getattr(INITS.get(init.get("name")), "schema", None))
    act_cfg = config_view(act, getattr(ACTIVATIONS.get(act.get("name")), "schema", None))
    gen = torch.Generator().manual_seed(12345)
    if _layer_free(init_cfg.name):  # one shape is as good as any: draw once
        w = torch.empty((n, 1))
        pooled = init_weight_(w, init_cfg, act_cfg, gen).flatten().numpy()
        return {name: pooled for name in shapes}
    draws = {}
    for name, shape in shapes.items():
        w = torch.empty(shape)
        reps = min(math.ceil(n / max(w.numel(), 1)), 5000)
        out = torch.empty((reps, *shape))
        for r in range(reps):
            out[r] = init_weight_(w, init_cfg, act_cfg, gen)
        draws[name] = out.flatten().numpy()
    return draws


def _bins(*arrays: np.ndarray) -> np.ndarray:
    finite = [a[np.isfinite(a)] for a in arrays]
    finite = [a for a in finite if a.size]
    if not finite:
        return np.linspace(-0.5, 0.5, HIST_BINS + 1)
    lo = min(float(a.min()) for a in finite)
    hi = max(float(a.max()) for a in finite)
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-30):  # constant: one bar, centred
        half = max(abs(lo) * 0.5, 0.5)
        lo, hi = lo - half, hi + half
    return np.linspace(lo, hi, HIST_BINS + 1)


def initial_weights(record: RunRecord, path: Path, dpi: int) -> Path | None:
    """Top: the scheme's shape, from fresh draws of the run's own init function. Bottom:
    the net's initial weights on the same bins with the count the scheme expects (deep nets:
    a heat map per layer and each layer's std)."""

    state = record.checkpoint("init")
    weights = {k: v for k, v in state.items() if k.endswith("weight")}
    names = sorted(weights, key=lambda k: layer_number(layer_of(k)))
    draws = scheme_draws(record, {k: tuple(weights[k].shape) for k in names})
    actual = {k: weights[k].flatten().double().numpy() for k in names}
    if len(names) > DEEP_NET_LAYERS:
        return _initial_weights_deep(record, names, actual, draws, path, dpi)
    init = run_config(record).get("init", {})
    every = np.concatenate([actual[k] for k in names])
    edges = _bins(every, *draws.values())
    n_draws = sum({id(d): d.size for d in draws.values()}.values())  # layer-free: one pool
    fig, gs = figure(7, 5.6, 2, 1, top=0.65, hspace=0.45, height_ratios=[1, 1.25])
    ax_s = fig.add_subplot(gs[0])
    ax_w = fig.add_subplot(gs[1], sharex=ax_s)
    ax_s.tick_params(axis="x", labelbottom=False)
    colors = layer_colors(len(names))
    layer_free = _layer_free(init.get("name"))
    if layer_free or len(names) == 1:
        pooled = draws[names[0]]
        counts, _ = np.histogram(pooled, edges)
        ax_s.stairs(counts / pooled.size, edges, fill=True, color="0.55", label="every layer")
    else:  # fans differ per layer, so does the scheme: one outline per layer
        for k, c in zip(names, colors, strict=True):
            counts, _ = np.histogram(draws[k], edges)
            ax_s.stairs(counts / draws[k].size, edges, color=c, linewidth=1.6, label=layer_of(k))
        ax_s.legend(fontsize=8, title="scheme for", title_fontsize=8)
    ax_s.set_ylabel("share of draws")
    per_layer = "the same for every layer" if layer_free else \
        f"{round(n_draws / len(names)):,} per layer"
    ax_s.set_title(f"The scheme: {describe_init(init)}, {n_draws:,} fresh draws ({per_layer})",
                   fontsize=10)
    # The net's weights, stacked by layer; the black outline is what the scheme predicts.
    bottom = np.zeros(len(edges) - 1)
    for k, c in zip(names, colors, strict=True):
        counts, _ = np.histogram(actual[k], edges)
        ax_w.stairs(bottom + counts, edges, baseline=bottom, fill=True, color=c,
                    label=f"{layer_of(k)} ({actual[k].size})")
        bottom = bottom + counts
    expected = sum(actual[k].size * np.histogram(draws[k], edges)[0] / draws[k].size
                   for k in names)
    ax_w.stairs(expected, edges, color="black", linewidth=1.2, label="expected under scheme")
    ax_w.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_w.set_ylabel("number of weights")
    ax_w.set_xlabel("initial weight value")
    ax_w.set_title(f"This net's {every.size:,} initial weights (biases excluded)", fontsize=10)
    ax_w.legend(fontsize=8)
    suptitle(fig, run_title(record))
    return save(fig, path, dpi)


def _initial_weights_deep(record, names, actual, draws, path, dpi):
    """Many layers: each layer's histogram as a heat-map row, and each layer's std
    against the std of the scheme's draws for that layer's shape."""
    from matplotlib import colors as mcolors

    init = run_config(record).get("init", {})
    scheme_std = {k: float(np.std(draws[k])) for k in names}
    # In units of each layer's own scheme std, so every row can be read against the same
    # shape (layers with wider fans are not squeezed into a few bins); a scheme with no
    # spread (zeros, constant) keeps raw values.
    scaled = all(v > 0 and np.isfinite(v) for v in scheme_std.values())
    shown_w = {k: actual[k] / scheme_std[k] if scaled else actual[k] for k in names}
    edges = _bins(*shown_w.values())
    if scaled:
        reach = min(max(float(np.nanmax(np.abs(np.concatenate(list(shown_w.values()))))), 2.0), 6.0)
        edges = np.linspace(-reach, reach, HIST_BINS + 1)
    # Values beyond the outer edges are counted in the outer bins, never dropped.
    share = np.array([np.histogram(np.clip(shown_w[k], edges[0], edges[-1]), edges)[0]
                      / max(actual[k].size, 1) for k in names])

    # Height grows with depth up to a page: past ~100 layers rows get thinner instead.
    fig, gs = figure(11, min(2.2 + 0.09 * len(names), 11), 1, 2, top=0.8, bottom=0.6, wspace=1.6,
                     width_ratios=[1.5, 1])
    ax_h, ax_std = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    mesh = ax_h.pcolormesh(edges, np.arange(len(names) + 1), np.ma.masked_equal(share, 0),
                           cmap="viridis", norm=mcolors.LogNorm(vmin=1e-4, vmax=1))
    label_layers(ax_h, [layer_of(n) for n in names], "y", 20, 0.5)
    ax_h.invert_yaxis()
    ax_h.grid(False)
    ax_h.set_xlabel("initial weight / the scheme's std for that layer" if scaled
                    else "initial weight value")
    ax_h.set_ylabel("layer (input at top)")
    ax_h.set_title("Initial weights per layer" + (" (scaled by the scheme's std)" if scaled else ""),
                   fontsize=10)
    fig.colorbar(mesh, ax=ax_h, label="share of the layer's weights", pad=0.02, fraction=0.05)
    y = np.arange(len(names)) + 0.5
    ax_std.plot([scheme_std[k] for k in names], y, color="black", linewidth=1.5,
                label=f"scheme ({round(np.mean([d.size for d in draws.values()])):,} draws/layer)")
    ax_std.plot([np.std(actual[k]) for k in names], y, linestyle="none", marker="o",
                markersize=3.5, color=PALETTE[0], label="this net")
    ax_std.set_ylim(len(names), 0)
    label_layers(ax_std, [layer_of(n) for n in names], "y", 20, 0.5)
    ax_std.set_xlabel("standard deviation of the layer's weights")
    stds = np.array([*scheme_std.values(), *(np.std(actual[k]) for k in names)])
    if spans_decades(stds):
        ax_std.set_xscale("log")
    ax_std.set_title(f"Std per layer: {describe_init(init)}", fontsize=10)
    ax_std.legend(fontsize=8)
    suptitle(fig, run_title(record))
    return save(fig, path, dpi)


# ---------------------------------------------------------------- weights over time
def weights_over_time(record: RunRecord, path: Path, dpi: int) -> Path:
    """Every weight of a small model as a line over log epochs, one panel per parameter."""
    rows = record.weights
    names = list(record.summary.get("param_shapes", {})) or list(dict.fromkeys(r["param"] for r in rows))
    order = {n: i for i, n in enumerate(names)}
    p = np.fromiter((order.get(r["param"], -1) for r in rows), dtype=int, count=len(rows))
    idx = np.fromiter((r["index"] for r in rows), dtype=int, count=len(rows))
    ep = np.fromiter((r["epoch"] for r in rows), dtype=int, count=len(rows))
    val = np.fromiter((r["value"] for r in rows), dtype=float, count=len(rows))
    epochs, col = np.unique(ep, return_inverse=True)
    names = [n for n in names if (p == order[n]).any()]
    cols = 2 if len(names) > 1 else 1
    n_rows = math.ceil(len(names) / cols)
    fig, gs = figure(5 * cols, 2.5 * n_rows + 0.9, n_rows, cols, top=0.95, left=0.9,
                     wspace=1.0, hspace=0.8)
    axes = [fig.add_subplot(gs[i // cols, i % cols]) for i in range(len(names))]
    for ax, name in zip(axes, names, strict=True):
        mine = p == order[name]
        n = int(idx[mine].max()) + 1
        grid = np.full((n, len(epochs)), np.nan)
        grid[idx[mine], col[mine]] = val[mine]
        for i in range(n):
            ax.plot(epochs, grid[i], color=color(i), linewidth=1.2,
                    marker="o" if len(epochs) < 4 else None)
        finite = grid[np.isfinite(grid)]
        moved = np.ptp(grid, axis=1)
        span = (f", largest change {np.nanmax(moved):.2g}" if np.isfinite(moved).any()
                else "")
        ax.set_title(f"{name} ({n} value{'s' if n != 1 else ''}{span})", fontsize=9)
        set_value_limits(ax, finite, rel_span=0.05, min_span=1e-12)
        # Plain labels (2.7e-07), not an offset text that collides with the title.
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        epoch_axis(ax, epochs)
        ax.set_ylabel("value")
    suptitle(fig, f"Weights over training (lines that coincide are symmetric units)\n"
                  f"{run_title(record)}")
    return save(fig, path, dpi)


# --------------------------------------------------------------- weight distribution
QUANTILE_BANDS = (("min", "max", 0.12, "min–max"), ("p05", "p95", 0.22, "5–95 %"),
                  ("p25", "p75", 0.38, "25–75 %"))
QUANTILES = ("min", "p05", "p25", "p50", "p75", "p95", "max")


def _fan(ax, x, stats, i, c, marker) -> None:
    for lo, hi, alpha, label in QUANTILE_BANDS:
        ax.fill_between(x, stats[lo][i], stats[hi][i], color=c, alpha=alpha, linewidth=0,
                        label=label)
    ax.plot(x, stats["p50"][i], color=c, marker=marker, markersize=3, label="median")
    ax.axhline(0, color="grey", linewidth=0.6)


def weight_distribution(record: RunRecord, path: Path, dpi: int) -> Path | None:
    """Quantile fan per weight matrix over log epochs: min-max, 5-95 %, 25-75 %, median.
    A deep net gets the fan across layers, at the first and the last log epoch."""
    # Params in depth order, epochs, and each quantile as a [param, epoch] matrix.
    params, epochs, stats = by_row_and_epoch(record.weight_stats, "param", QUANTILES,
                                             lambda k: layer_number(layer_of(k)))
    if not params:
        return None
    c = PALETTE[0]
    if len(params) > DEEP_NET_LAYERS:
        moments = [0, len(epochs) - 1] if len(epochs) > 1 else [0]
        # Each moment on its own scale: a net that blew up must not flatten its start.
        fig, gs = figure(6 * len(moments) + 1, 4.2, 1, len(moments), right=1.3, wspace=0.8)
        axes = [fig.add_subplot(gs[i]) for i in range(len(moments))]
        x = np.arange(len(params))
        for ax, j in zip(axes, moments, strict=True):
            column = {q: stats[q][:, j][None, :] for q in QUANTILES}
            _fan(ax, x, column, 0, c, "o" if len(params) <= 20 else None)
            label_layers(ax, [layer_of(p) for p in params], "x", 10)
            ax.set_xlabel("layer (input → output)")
            ax.set_title(f"epoch {epochs[j]}", fontsize=10)
        axes[0].set_ylabel("weight value")
        handles, labels = axes[0].get_legend_handles_labels()
        axes[-1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
        suptitle(fig, f"Weight distribution across layers\n{run_title(record)}")
        return save(fig, path, dpi)
    cols = min(len(params), 4)
    n_rows = math.ceil(len(params) / cols)
    fig, gs = figure(3.3 * cols + 1.4, 2.6 * n_rows + 0.9, n_rows, cols, top=0.95,
                     right=1.3, wspace=0.85, hspace=0.85)
    flat = [fig.add_subplot(gs[i // cols, i % cols]) for i in range(len(params))]
    marker = "o" if len(epochs) <= 12 else None
    for i, (ax, name) in enumerate(zip(flat, params)):
        _fan(ax, epochs, stats, i, c, marker)
        ax.set_title(name, fontsize=10)
        epoch_axis(ax, epochs)
        ax.set_ylabel("weight value")
    handles, labels = flat[0].get_legend_handles_labels()
    flat[cols - 1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.03, 1), fontsize=8)
    suptitle(fig, f"Weight distribution per layer over training\n{run_title(record)}")
    return save(fig, path, dpi)

