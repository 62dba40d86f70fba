"""Gradient norms (grad_norms.csv): by layer at the first and last step (the textbook's
figure), per parameter over training, and per layer and epoch (deep nets); zeros and
NaN/Inf are never drawn as values (:class:`plotting.LogAxis`)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.patches import Patch

from initlab.record import RunRecord, layer_number, layer_of
from initlab.report.plotting import (
    DEEP_NET_LAYERS,
    SHOWN_LAYERS,
    color,
    colorbar_beside,
    epoch_axis,
    evenly_spaced,
    figure,
    hatch_background,
    label_layers,
    layer_colors,
    log_axes,
    mark_non_finite_cells,
    note_non_finite,
    regular_ticks,
    run_title,
    save,
)


@dataclass
class GradNorms:
    """grad_norms.csv as one matrix: ``norms[i, j]`` is param ``params[i]`` at ``steps[j]``
    (NaN where a parameter has no row for a step)."""

    params: list[str]
    steps: np.ndarray
    epochs: np.ndarray  # the epoch of each step
    norms: np.ndarray

    @property
    def layers(self) -> list[str]:
        return sorted(dict.fromkeys(layer_of(p) for p in self.params), key=layer_number)

    def row(self, param: str) -> np.ndarray | None:
        return self.norms[self.params.index(param)] if param in self.params else None


def grad_norms(record: RunRecord) -> GradNorms:
    rows = record.grad_norms
    names = list(dict.fromkeys([*record.param_names, *(r["param"] for r in rows)]))
    order = {n: i for i, n in enumerate(names)}
    p = np.fromiter((order[r["param"]] for r in rows), dtype=int, count=len(rows))
    s = np.fromiter((r["step"] for r in rows), dtype=int, count=len(rows))
    e = np.fromiter((r["epoch"] for r in rows), dtype=int, count=len(rows))
    v = np.fromiter((r["norm"] for r in rows), dtype=float, count=len(rows))
    steps, col = np.unique(s, return_inverse=True)
    norms = np.full((len(names), len(steps)), np.nan)
    norms[p, col] = v
    epochs = np.zeros(len(steps), dtype=int)
    epochs[col] = e
    return GradNorms(names, steps, epochs, norms)


def has_several_steps(record: RunRecord) -> bool:
    return bool(record.grad_norms) and record.grad_norms[-1]["step"] > 0


def has_deep_grad_norms(record: RunRecord) -> bool:
    return bool(record.grad_norms) and len({layer_of(p) for p in record.param_names}) > DEEP_NET_LAYERS


# ------------------------------------------------------------- gradient norm by layer
def grad_norm_by_layer(record: RunRecord, path: Path, dpi: int) -> Path:
    """The textbook's figure: gradient L2 norm per layer on a log scale, first (and last) step."""
    g = grad_norms(record)
    layers = g.layers
    moments = [("first step", 0)] + ([("last step", -1)] if len(g.steps) > 1 else [])
    lines = []  # (label, values per layer, colour, style)
    for m, (moment, idx) in enumerate(moments):
        for kind, ls, marker in (("weight", "-", "o"), ("bias", "--", "s")):
            rows = [g.row(f"{layer}.{kind}") for layer in layers]
            if all(r is None for r in rows):
                continue
            values = np.array([r[idx] if r is not None else np.nan for r in rows])
            label = f"{kind} ({moment}, step {g.steps[idx]})" if len(moments) > 1 else kind
            lines.append((label, values, color(2 * m + (kind == "bias")), ls, marker,
                          [r is not None for r in rows]))
    zero_lines = [i for i, line in enumerate(lines) if (line[1] == 0).any()]
    fig, gs = figure(7 if len(layers) <= 12 else 10, 4.8)
    log = log_axes(fig, gs[0], zero_rows=len(zero_lines))
    x = np.arange(len(layers))
    for i, (label, values, c, ls, marker, exists) in enumerate(lines):
        keep = np.array(exists)  # a missing parameter (no bias) is absent, not "NaN"
        log.plot(x[keep], values[keep], row=zero_lines.index(i) if i in zero_lines else 0,
                 color=c, linestyle=ls, marker=marker, label=label,
                 markersize=5 if len(layers) <= 20 else 3)
    log.finish("gradient L2 norm", "layer (input → output)")
    shown = set(regular_ticks(len(layers), 12))
    (log.strip or log.ax).set_xticks(x, [name if i in shown else "" for i, name in enumerate(layers)])
    (log.strip or log.ax).set_xlim(-0.5, len(layers) - 0.5)
    note_non_finite(log.ax, log.non_finite)
    log.ax.set_title(f"Gradient norm by layer\n{run_title(record)}", fontsize=10)
    log.ax.legend(fontsize=8)
    return save(fig, path, dpi)


# ------------------------------------------------------- gradient norm over training
def grad_norm_over_time(record: RunRecord, path: Path, dpi: int) -> Path:
    """One line per parameter over optimizer steps; a deep net shows the weights of a few
    evenly spaced layers (its heat map shows them all)."""
    g = grad_norms(record)
    layers = g.layers
    deep = len(layers) > DEEP_NET_LAYERS
    shown_layers = evenly_spaced(layers, SHOWN_LAYERS) if deep else layers
    # Colour by depth over the whole net, so fc1 .. fcN read as a gradient of hue.
    every_color = dict(zip(layers, layer_colors(len(layers)), strict=True))
    colors = {layer: every_color[layer] for layer in shown_layers}
    params = [p for p in g.params if layer_of(p) in colors and (not deep or p.endswith("weight"))]
    zero_params = [p for p in params if (g.row(p) == 0).any()]
    beside = len(params) > 8  # a legend this long would cover the lines: put it beside them
    ncol = 1 + (len(params) > 16)
    fig, gs = figure(8 + 1.3 * ncol * beside, 4.6, right=0.25 + 1.3 * ncol * beside)
    log = log_axes(fig, gs[0], zero_rows=len(zero_params))
    for p in params:
        log.plot(g.steps, g.row(p), row=zero_params.index(p) if p in zero_params else 0,
                 color=colors[layer_of(p)], linestyle="-" if p.endswith("weight") else "--",
                 linewidth=1.2, label=p, marker="o" if len(g.steps) < 4 else None)
    log.finish("gradient L2 norm")
    epoch_axis(log.strip or log.ax, g.steps, "optimizer step")
    note_non_finite(log.ax, log.non_finite)
    which = (f"weights of {len(shown_layers)} of {len(layers)} layers" if deep
             else "per parameter")
    log.ax.set_title(f"Gradient norm over training ({which})\n{run_title(record)}", fontsize=10)
    if beside:
        log.ax.legend(fontsize=8, ncol=ncol, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        log.ax.legend(fontsize=8, loc="best")
    return save(fig, path, dpi)


# ------------------------------------------------------------ gradient-norm heat map
def grad_norm_heatmap(record: RunRecord, path: Path, dpi: int) -> Path | None:
    """Mean weight-gradient L2 norm per layer (rows, input at the top) and epoch (columns),
    log colour scale; exact zeros hatched, NaN/Inf in a colour of their own."""
    g = grad_norms(record)
    layers = [layer for layer in g.layers if f"{layer}.weight" in g.params]
    if not layers or not len(g.steps):
        return None
    epochs, col = np.unique(g.epochs, return_inverse=True)
    per_step = np.array([g.row(f"{layer}.weight") for layer in layers])
    grid = np.zeros((len(layers), len(epochs)))
    counts = np.zeros(len(epochs))
    np.add.at(counts, col, 1)
    np.add.at(grid.T, col, per_step.T)  # NaN/Inf in any step of an epoch taint its mean
    grid /= counts
    finite = np.isfinite(grid)
    positive = grid[finite & (grid > 0)]
    fig, gs = figure(min(12, 6 + 0.04 * len(epochs)), min(2.2 + 0.16 * len(layers), 8), left=0.75,
                     right=1.3, bottom=0.9)
    ax = fig.add_subplot(gs[0])
    hatch_background(ax)  # zeros are masked: it shows through those cells
    vmin, vmax = (positive.min(), positive.max()) if positive.size else (1e-2, 1e2)
    if vmax <= vmin:
        vmin, vmax = vmin / 10, vmax * 10
    edges_x = np.concatenate(([epochs[0] - 0.5], epochs.astype(float) + 0.5))
    edges_y = np.arange(len(layers) + 1)
    mesh = ax.pcolormesh(edges_x, edges_y, np.ma.masked_where(~finite | (grid <= 0), grid),
                         cmap="viridis", norm=mcolors.LogNorm(vmin=vmin, vmax=vmax))
    handles = []
    if mark_non_finite_cells(ax, edges_x, edges_y, finite):
        handles.append(Patch(facecolor="#D55E00", label="NaN/Inf"))
    if (finite & (grid == 0)).any():
        handles.append(Patch(facecolor="white", edgecolor="0.7", hatch="///", label="exactly 0"))
    label_layers(ax, layers, "y", 25, 0.5)
    ax.invert_yaxis()
    ax.set_ylabel("layer (input at top)")
    epoch_axis(ax, epochs)
    ax.set_xlim(edges_x[0], edges_x[-1])
    ax.grid(False)
    colorbar_beside(fig, mesh, gs, "mean gradient L2 norm in epoch")
    if handles:
        ax.legend(handles=handles, loc="upper right", bbox_to_anchor=(1, 0), ncol=2,
                  fontsize=8, borderaxespad=2.2)
    ax.set_title(f"Weight-gradient norm by layer and epoch (log colour)\n{run_title(record)}",
                 fontsize=10)
    return save(fig, path, dpi)
