"""What every figure shares: backend, style, palette, saving, titles, and the axes helpers
that keep a figure honest: ``value_limits``/``epoch_axis`` (flat looks flat, integer
epochs), ``LogAxis`` (zeros on an "= 0" strip, NaN/Inf as crosses on the top edge),
``series_style`` (lines that coincide stay apart), ``label_layers`` (regular layer ticks).
The figure modules import this one; it imports none of them."""

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display is ever needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import transforms  # noqa: E402
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from initlab.options import describe_init, describe_option  # noqa: E402

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
TRAIN_COLOR, DEV_COLOR = PALETTE[0], PALETTE[1]
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# Beyond this many layers a figure stops drawing one line or panel per layer.
DEEP_NET_LAYERS = 8
# How many layers the small multiples of a deep net show (evenly spaced, first and last kept).
SHOWN_LAYERS = 6


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def layer_colors(n: int) -> list[str]:
    """One colour per layer: the palette for up to 8 layers, else viridis in depth order."""
    if n <= len(PALETTE):
        return PALETTE[:n]
    cmap = matplotlib.colormaps["viridis"]
    # Stop short of viridis' pale yellow end, which is hard to see on white.
    return [matplotlib.colors.to_hex(cmap(0.88 * i / (n - 1))) for i in range(n)]


def series_style(i: int, n: int = 1) -> dict:
    """Line keywords for series ``i`` of ``n``: colour, style and marker change with ``i``
    (past the palette's 8 colours the line style shifts, so no two of 32 series look alike);
    earlier series are wider and lower, so coinciding lines (relu, lrelu) show at the edges."""
    return {
        "color": color(i),
        "linestyle": LINESTYLES[(i + i // len(PALETTE)) % len(LINESTYLES)],
        "marker": MARKERS[i % len(MARKERS)],
        "linewidth": 1.3 + 1.4 * (n - 1 - i) / max(n - 1, 1) if n > 1 else 1.6,
        "markersize": 4.5 + 3.5 * (n - 1 - i) / max(n - 1, 1) if n > 1 else 5,
        "zorder": 2 + i / max(n, 1),
    }


def markevery(i: int, n_points: int, n_series: int, marks: int = 8):
    """Markers of series ``i`` at about ``marks`` points, staggered between series so
    markers of coinciding lines do not sit on one another."""
    if n_points <= marks:
        return None
    step = max(1, n_points // marks)
    return (int(i * step / max(n_series, 1)) % step, step)


def evenly_spaced(items: Sequence, k: int) -> list:
    """At most ``k`` of ``items``, evenly spaced, first and last always kept."""
    items = list(items)
    if len(items) <= k:
        return items
    idx = sorted({round(i * (len(items) - 1) / (k - 1)) for i in range(k)})
    return [items[i] for i in idx]


def regular_ticks(n: int, most: int = 12) -> list[int]:
    """Indices of ``n`` layers to label, at a regular step: every layer when they fit, else
    layer 1 and every 2nd, 5th, 10th ... layer (fc1, fc5, fc10, ...), never a ragged mix."""
    step = next((s for s in (1, 2, 5, 10, 20, 25, 50, 100, 250, 500) if n / s <= most), n)
    if step <= 2:
        return list(range(0, n, step))
    return [0, *range(step - 1, n, step)]


def label_layers(ax, names: Sequence[str], axis: str = "x", most: int = 12,
                 offset: float = 0.0) -> None:
    """Tick labels for ``names`` (one position per name) at :func:`regular_ticks`."""
    shown = regular_ticks(len(names), most)
    set_ticks = ax.set_xticks if axis == "x" else ax.set_yticks
    set_ticks([i + offset for i in shown], [names[i] for i in shown])


def style() -> None:
    plt.rcParams.update({
        "figure.dpi": 100,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
        "legend.frameon": False,
        "font.size": 10,
        "axes.titlepad": 9,  # room for the NaN/Inf crosses on the top edge
    })


def figure(width: float, height: float, rows: int = 1, cols: int = 1, *, left: float = 0.95,
           right: float = 0.25, top: float = 0.75, bottom: float = 0.55, wspace: float = 0.75,
           hspace: float = 0.7, **gridspec_kw):
    """A figure and a grid spec with fixed margins and gaps in inches: no layout engine,
    whose extra pass costs about as much as the drawing."""
    fig = plt.figure(figsize=(width, height))
    panel_w = (width - left - right - (cols - 1) * wspace) / cols
    panel_h = (height - top - bottom - (rows - 1) * hspace) / rows
    gs = fig.add_gridspec(rows, cols, left=left / width, right=1 - right / width,
                          bottom=bottom / height, top=1 - top / height,
                          wspace=wspace / panel_w, hspace=hspace / panel_h, **gridspec_kw)
    return fig, gs


def colorbar_beside(fig, mappable, gs, label: str, pad: float = 0.15, width: float = 0.14,
                    **kw):
    """A colour bar in the right margin, as tall as the grid spec ``gs`` (pad, width in inches)."""
    w_in, _ = fig.get_size_inches()
    params = gs.get_subplot_params(fig)
    cax = fig.add_axes((params.right + pad / w_in, params.bottom, width / w_in,
                        params.top - params.bottom))
    return fig.colorbar(mappable, cax=cax, label=label, **kw)


def suptitle(fig, text: str, top: float = 0.1, **kw) -> None:
    """The figure's title, ``top`` inches below its upper edge."""
    _, h_in = fig.get_size_inches()
    fig.suptitle(text, y=1 - top / h_in, va="top", fontsize=kw.pop("fontsize", 10), **kw)


def save(fig, path: Path, dpi: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # zlib level 3 instead of 6: a quarter less time per PNG for ~10 % more bytes.
    extra = {"pil_kwargs": {"compress_level": 3}} if path.suffix == ".png" else {}
    fig.savefig(path, dpi=dpi, **extra)
    plt.close(fig)
    return path


def by_row_and_epoch(rows: list[dict], key: str, columns: Sequence[str], order_key=None
                     ) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Rows (one per ``key`` value and log epoch) as the sorted ``key`` values, the epochs and
    each column as a [key, epoch] matrix (NaN where missing), in one numpy pass."""
    names = sorted(dict.fromkeys(r[key] for r in rows), key=order_key)
    order = {n: i for i, n in enumerate(names)}
    index = np.fromiter((order[r[key]] for r in rows), dtype=int, count=len(rows))
    epochs, col = np.unique(np.fromiter((r["epoch"] for r in rows), dtype=int, count=len(rows)),
                            return_inverse=True)
    matrices = {}
    for c in columns:
        m = np.full((len(names), len(epochs)), np.nan)
        m[index, col] = np.fromiter((r[c] for r in rows), dtype=float, count=len(rows))
        matrices[c] = m
    return names, epochs, matrices


def run_config(record) -> dict:
    """The run's resolved config as plain values (the record's, else summary.json's)."""
    return getattr(record, "config", None) or record.summary.get("config", {}) or {}


def run_title(record) -> str:
    """A short description of the run for figure titles: '5-layer MLP, sigmoid, normal(...), bias 1.0'."""
    c = run_config(record)
    act, init, model = c.get("act", {}), c.get("init", {}), c.get("model", {})
    return (f"{model.get('depth')}-layer MLP, {describe_option('act', act)}, "
            f"{describe_init(init)}, bias {init.get('bias')}")


# ------------------------------------------------------------------- linear axes
def value_limits(values, rel_span: float = 0.1, min_span: float = 1e-3,
                 nonnegative: bool = False) -> tuple[float, float] | None:
    """y-limits that never blow a tiny difference up: a span of at least ``rel_span`` of the
    largest magnitude (and ``min_span``), centred; None when no value is finite."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return None
    lo, hi = float(v.min()), float(v.max())
    need = max(rel_span * max(abs(lo), abs(hi)), min_span)
    if hi - lo < need:
        mid = (lo + hi) / 2
        lo, hi = mid - need / 2, mid + need / 2
        if nonnegative and lo < 0:
            lo, hi = 0.0, hi - lo
    pad = 0.06 * (hi - lo)
    return lo - pad, hi + pad


def set_value_limits(ax, values, **kw) -> None:
    """:func:`value_limits` on ``ax``; with no finite value the axis says so instead of
    showing a made-up range."""
    limits = value_limits(values, **kw)
    if limits is not None:
        ax.set_ylim(*limits)
        return
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.text(0.5, 0.5, "no finite value to draw", transform=ax.transAxes, ha="center",
            va="center", color="0.4")


def set_accuracy_axis(ax) -> None:
    """Accuracy always spans [0, 1]: 0.51 against 0.50 must not look like a jump."""
    ax.set_ylim(-0.02, 1.02)


def epoch_axis(ax, epochs, label: str = "epoch") -> None:
    """Integer ticks; a handful of epochs get a tick each and half a step of room, so a
    one-epoch run reads "1", not 0.945 .. 1.050."""
    es = sorted({int(e) for e in epochs})
    ax.set_xlabel(label)
    if not es:
        return
    if len(es) <= 6:
        ax.set_xticks(es)
    else:  # as many as fit the axis' width
        ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True))
    if es[-1] - es[0] < 3:
        ax.set_xlim(es[0] - 0.5, es[-1] + 0.5)


# ---------------------------------------------------------------- non-finite values
def hatch_background(ax) -> None:
    """A hatched white background: the masked cells of a heat map (exact zeros) show it."""
    ax.patch.set_facecolor("white")
    ax.patch.set_hatch("///")
    ax.patch.set_edgecolor("0.7")


def mark_non_finite_cells(ax, x_edges, y_edges, finite: np.ndarray) -> bool:
    """The cells of a heat map that are not ``finite`` in orange; whether there are any."""
    if finite.all():
        return False
    ax.pcolormesh(x_edges, y_edges, np.ma.masked_where(finite, np.ones(finite.shape)),
                  cmap=matplotlib.colors.ListedColormap(["#D55E00"]), vmin=0, vmax=1)
    return True


def mark_non_finite(ax, xs, values, c: str, shift: int = 0) -> int:
    """NaN/Inf (a plot would skip them) as crosses on the top edge, ``shift`` crosses to the
    right; returns how many."""
    xs, values = np.asarray(xs, dtype=float), np.asarray(values, dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        top = transforms.blended_transform_factory(ax.transData, ax.transAxes)
        if shift:
            top = top + transforms.ScaledTranslation(shift * 8 / 72, 0, ax.figure.dpi_scale_trans)
        ax.scatter(xs[bad], np.full(int(bad.sum()), 1.0), marker="x", s=40, color=c,
                   transform=top, zorder=5, clip_on=False, linewidths=1.5)
    return int(bad.sum())


def note_non_finite(ax, count: int) -> None:
    """A legend entry for the crosses of :func:`mark_non_finite` (call before ``legend``)."""
    if count:
        ax.scatter([], [], marker="x", color="0.3",
                   label=f"NaN or Inf: × on the top edge ({count} value{'s' if count != 1 else ''})")


# ----------------------------------------------------------------------- log axes
def log_limits(values, min_decades: float = 2.0) -> tuple[float, float] | None:
    """Log-axis limits around the positive finite ``values`` spanning at least
    ``min_decades``; None when there are none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return None
    lo, hi = math.log10(v.min()), math.log10(v.max())
    if hi - lo < min_decades:
        mid = (lo + hi) / 2
        lo, hi = mid - min_decades / 2, mid + min_decades / 2
    pad = 0.08 * (hi - lo)
    return 10 ** (lo - pad), 10 ** (hi + pad)


class LogAxis:
    """A log y-axis for values that may be 0, NaN or Inf: positive values on ``ax`` (lines
    break where one is not), exact zeros on ``strip`` ("= 0", a row per series), NaN/Inf as
    crosses on the top edge. Build it with :func:`log_axes`; call :meth:`finish` at the end."""

    def __init__(self, ax, strip=None, strip_rows: int = 1):
        self.ax, self.strip, self.rows = ax, strip, max(strip_rows, 1)
        self.values: list[np.ndarray] = []
        self.non_finite = 0
        self.series = 0
        ax.set_yscale("log")
        if strip is not None:
            strip.set_ylim(self.rows - 0.5, -0.5)
            strip.set_yticks([(self.rows - 1) / 2], ["= 0"])
            strip.tick_params(axis="y", length=0)
            strip.set_facecolor("0.94")
            strip.grid(False)
            strip.spines["top"].set_visible(False)
            ax.tick_params(axis="x", labelbottom=False)

    def plot(self, x, values, row: int = 0, label: str | None = None, **line_kw) -> None:
        x, values = np.asarray(x, dtype=float), np.asarray(values, dtype=float)
        self.values.append(values)
        shown = np.where(np.isfinite(values) & (values > 0), values, np.nan)
        c = line_kw.pop("color", None)
        (line,) = self.ax.plot(x, shown, color=c, label=label, **line_kw)
        c = line.get_color()
        zeros = values == 0
        if zeros.any() and self.strip is not None:
            kw = {k: line_kw[k] for k in ("marker",) if k in line_kw}
            self.strip.plot(x[zeros], np.full(int(zeros.sum()), min(row, self.rows - 1)),
                            linestyle="none", marker=kw.get("marker") or "o", markersize=7,
                            markerfacecolor="white", markeredgecolor=c, markeredgewidth=1.5,
                            clip_on=False)
        self.non_finite += mark_non_finite(self.ax, x, values, c, shift=self.series)
        self.series += 1

    def band(self, x, low, high, c: str, alpha: float = 0.18) -> None:
        low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        ok = np.isfinite(low) & np.isfinite(high) & (low > 0) & (high > 0)
        low, high = np.where(ok, low, np.nan), np.where(ok, high, np.nan)
        self.values += [low, high]
        self.ax.fill_between(np.asarray(x, dtype=float), low, high, color=c, alpha=alpha, linewidth=0)

    def finish(self, ylabel: str = "", xlabel: str = "", min_decades: float = 2.0) -> None:
        every = np.concatenate(self.values) if self.values else np.array([])
        limits = log_limits(every, min_decades)
        if limits is None:
            limits = (1e-2, 1e2)
            zeros = self.strip is not None and any((v == 0).any() for v in self.values)
            self.ax.text(0.5, 0.5, "every value is exactly 0 (below)" if zeros else
                         "no positive finite value to draw", transform=self.ax.transAxes,
                         ha="center", va="center", color="0.4")
            self.ax.tick_params(axis="y", which="both", labelleft=False)
        self.ax.set_ylim(*limits)
        # Decades only: labels like "6x10^-1" on minor ticks crowd the axis.
        self.ax.yaxis.set_major_locator(LogLocator(numticks=8))
        self.ax.yaxis.set_minor_formatter(NullFormatter())
        self.ax.set_ylabel(ylabel)
        (self.strip if self.strip is not None else self.ax).set_xlabel(xlabel)


def share_log_limits(logs: list[LogAxis], min_decades: float = 2.0) -> None:
    """One y-range for several :class:`LogAxis` panels (after their ``finish``)."""
    every = [v for log in logs for v in log.values]
    limits = log_limits(np.concatenate(every) if every else [], min_decades)
    if limits is not None:
        for log in logs:
            log.ax.set_ylim(*limits)


def spans_decades(values, decades: float = 1) -> bool:
    """Whether the positive finite ``values`` span more than ``decades`` powers of ten."""
    v = np.asarray(values, dtype=float)
    positive = v[np.isfinite(v) & (v > 0)]
    return bool(positive.size) and positive.max() / positive.min() > 10**decades


def has_zeros(*value_lists) -> bool:
    return any((np.asarray(v, dtype=float) == 0).any() for v in value_lists if len(v))


def log_axes(fig, cell, zero_rows: int = 0, sharex=None, sharey=None) -> LogAxis:
    """A :class:`LogAxis` in gridspec ``cell``; with ``zero_rows`` > 0 the cell is split
    into the log axes and a "= 0" strip of that many rows below it."""
    if not zero_rows:
        return LogAxis(fig.add_subplot(cell, sharex=sharex, sharey=sharey))
    sub = cell.subgridspec(2, 1, height_ratios=[10, 0.9 + 0.45 * zero_rows], hspace=0.02)
    ax = fig.add_subplot(sub[0], sharex=sharex, sharey=sharey)
    strip = fig.add_subplot(sub[1], sharex=ax)
    return LogAxis(ax, strip, zero_rows)
