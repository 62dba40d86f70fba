"""Figures of one run, drawn from its record (CSV/JSON; checkpoints and data for the
histogram and the decision boundary). Each function saves one file and returns its path.
"""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display is ever needed
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.transforms  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from initlab.record import RunRecord, layer_of  # noqa: E402
from initlab.report.tables import describe_init  # noqa: E402

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
TRAIN_COLOR, DEV_COLOR = PALETTE[0], PALETTE[1]


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _style() -> None:
    plt.rcParams.update({
        "figure.dpi": 100,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
        "legend.frameon": False,
        "font.size": 10,
    })


def _save(fig, path: Path, dpi: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def run_title(record: RunRecord) -> str:
    """A short description of the run for figure titles: 'sigmoid, normal(std=0.01), bias 1.0'."""
    c = record.summary.get("config", {})
    act, init, model = c.get("act", {}), c.get("init", {}), c.get("model", {})
    return (f"{model.get('depth')}-layer MLP, {act.get('name')}, "
            f"{describe_init(init)}, bias {init.get('bias')}")


def loss_and_accuracy(record: RunRecord, path: Path, dpi: int) -> Path:
    epochs = [m["epoch"] for m in record.metrics]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, key, label in ((ax_loss, "loss", "binary cross-entropy"), (ax_acc, "acc", "accuracy")):
        ax.plot(epochs, [m[f"train_{key}"] for m in record.metrics], color=TRAIN_COLOR,
                label="train", marker="o" if len(epochs) < 3 else None)
        ax.plot(epochs, [m[f"dev_{key}"] for m in record.metrics], color=DEV_COLOR,
                label="dev", linestyle="--", marker="o" if len(epochs) < 3 else None)
        _note_non_finite(ax, sum(
            _mark_non_finite(ax, epochs, [m[f"{split}_{key}"] for m in record.metrics], c)
            for split, c in (("train", TRAIN_COLOR), ("dev", DEV_COLOR))
        ))
        best = record.summary.get("best_epoch")
        if best:
            ax.axvline(best, color="grey", linestyle=":", linewidth=1, label=f"best dev (epoch {best})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    ax_acc.set_ylim(-0.02, 1.02)
    losses = [m[f"{split}_loss"] for m in record.metrics for split in ("train", "dev")]
    finite = [v for v in losses if math.isfinite(v) and v > 0]
    if finite and max(finite) / min(finite) > 1e3:  # a diverging loss would flatten the rest
        ax_loss.set_yscale("log")
        ax_loss.set_ylabel("binary cross-entropy (log scale)")
    ax_loss.set_title("Loss")
    ax_acc.set_title("Accuracy")
    fig.suptitle(run_title(record))
    return _save(fig, path, dpi)


def _mark_non_finite(ax, xs, values, c: str) -> int:
    """Draw NaN/Inf values (which a plot would silently skip) as crosses on the top edge,
    the first one labelled; returns how many there were."""
    bad = [(x, v) for x, v in zip(xs, values, strict=True) if not math.isfinite(v)]
    if bad:
        top = matplotlib.transforms.blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter([x for x, _ in bad], [0.97] * len(bad), marker="x", s=40, color=c,
                   transform=top, zorder=4, clip_on=False)
        ax.annotate(str(bad[0][1]), (bad[0][0], 0.97), xycoords=top, textcoords="offset points",
                    xytext=(5, -12), fontsize=8, color=c)
    return len(bad)


def _note_non_finite(ax, count: int) -> None:
    """A legend entry for the crosses of :func:`_mark_non_finite` (call before ``legend``)."""
    if count:
        ax.scatter([], [], marker="x", color="grey",
                   label=f"NaN/Inf ({count} value{'s' if count != 1 else ''})")


def _log_floor(values: list[float]) -> float:
    """Where exact zeros are drawn on a log axis: two decades below the smallest positive value."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if not positive:
        return 1e-12
    return 10 ** (math.floor(math.log10(min(positive))) - 2)


def plot_log_values(ax, x, values, floor: float, color: str, zero_label_dy: float = 4,
                    **line_kw) -> None:
    """Plot ``values`` on a log y-axis, with exact zeros visible rather than missing.

    A zero is drawn at ``floor`` (see :func:`_log_floor`) as a hollow marker labelled
    "= 0"; NaN (no value) leaves a gap. ``zero_label_dy`` (points) lets several lines
    that are all zero at one x keep their labels apart.
    """
    # The line breaks at zeros: a segment from the floor to a real value would draw a
    # slope that the data do not have.
    shown = [v if v > 0 else math.nan for v in values]
    ax.plot(list(x), shown, color=color, **line_kw)
    zeros = [xi for xi, v in zip(x, values) if v == 0]
    if zeros and not getattr(ax, "_initlab_zero_floor", False):
        ax._initlab_zero_floor = True
        ax.axhline(floor, color="grey", linestyle=":", linewidth=0.8, zorder=1)
        ax.margins(x=0.08)  # room for the "= 0" labels at the ends
    for xi in zeros:
        ax.plot(xi, floor, marker="o", markersize=10, markerfacecolor="white",
                markeredgecolor=color, zorder=3, linestyle="none")
        ax.annotate("= 0", (xi, floor), textcoords="offset points",
                    xytext=(6, zero_label_dy), fontsize=8, color=color)


def layer_colors(n: int) -> list[str]:
    """One colour per layer: the palette for up to 8 layers, else viridis in depth order."""
    if n <= len(PALETTE):
        return PALETTE[:n]
    cmap = matplotlib.colormaps["viridis"]
    # Stop short of viridis' pale yellow end, which is hard to see on white.
    return [matplotlib.colors.to_hex(cmap(0.88 * i / (n - 1))) for i in range(n)]


def grad_norm_by_layer(record: RunRecord, path: Path, dpi: int) -> Path:
    """The textbook's figure: gradient L2 norm per layer on a log scale, first (and last) step.

    Exact zeros cannot sit on a log axis; they are drawn as hollow markers on the
    bottom edge and labelled "= 0", so a dead layer is visible rather than missing.
    """
    series = record.grad_norm_series()
    layers = list(dict.fromkeys(layer_of(p) for p in series))
    steps = [s for s, _ in next(iter(series.values()), [])]
    moments = [("first step", 0)] + ([("last step", -1)] if len(steps) > 1 else [])
    all_values = [v for pts in series.values() for _, v in pts]
    floor = _log_floor(all_values)
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    x = range(len(layers))
    non_finite = 0
    for m, (moment, idx) in enumerate(moments):
        for kind, style in (("weight", "-"), ("bias", "--")):
            values = []
            for layer in layers:
                pts = series.get(f"{layer}.{kind}", [])
                values.append(pts[idx][1] if pts else math.nan)
            label = f"{kind} ({moment}, step {steps[idx]})" if len(moments) > 1 else kind
            plot_log_values(ax, x, values, floor, color(2 * m + (kind == "bias")),
                            linestyle=style, marker="o", label=label)
            recorded = [(xi, v) for xi, v, layer in zip(x, values, layers, strict=True)
                        if series.get(f"{layer}.{kind}")]  # NaN here means "no such param"
            non_finite += _mark_non_finite(ax, [xi for xi, _ in recorded],
                                           [v for _, v in recorded], color(2 * m + (kind == "bias")))
    _note_non_finite(ax, non_finite)
    ax.set_yscale("log")
    ax.set_xticks(list(x), layers)
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("gradient L2 norm")
    ax.set_title(f"Gradient norm by layer\n{run_title(record)}", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path, dpi)


def grad_norm_over_time(record: RunRecord, path: Path, dpi: int) -> Path:
    series = record.grad_norm_series()
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    all_values = [v for pts in series.values() for _, v in pts]
    floor = _log_floor(all_values)
    layers = list(dict.fromkeys(layer_of(p) for p in series))
    colors = dict(zip(layers, layer_colors(len(layers)), strict=True))
    non_finite = 0
    for name, pts in series.items():
        ax.plot([s for s, _ in pts], [v if v > 0 else floor for _, v in pts],
                color=colors[layer_of(name)],
                linestyle="-" if name.endswith("weight") else "--", linewidth=1.2, label=name)
        non_finite += _mark_non_finite(ax, [s for s, _ in pts], [v for _, v in pts],
                                       colors[layer_of(name)])
    _note_non_finite(ax, non_finite)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("gradient L2 norm")
    ax.set_title(f"Gradient norm per parameter over training\n{run_title(record)}", fontsize=10)
    if len(series) > 8:  # a legend this long would cover the lines: put it beside them
        ax.legend(fontsize=8, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path, dpi)


def weights_over_time(record: RunRecord, path: Path, dpi: int) -> Path:
    """Every weight of a small model as a line over log epochs, one panel per parameter."""
    shapes = record.summary.get("param_shapes", {})
    names = list(shapes)
    cols = 2
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(10, 2.8 * rows), squeeze=False,
                             constrained_layout=True)
    for ax, name in zip(axes.flat, names):
        by_index: dict[int, list[tuple[int, float]]] = {}
        for w in record.weights:
            if w["param"] == name:
                by_index.setdefault(w["index"], []).append((w["epoch"], w["value"]))
        for i, pts in sorted(by_index.items()):
            ax.plot([e for e, _ in pts], [v for _, v in pts], color=color(i), linewidth=1.2)
        n = len(by_index)
        ax.set_title(f"{name} ({n} value{'s' if n != 1 else ''})", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("value")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"Weights over training (lines that coincide are symmetric units)\n"
                 f"{run_title(record)}", fontsize=10)
    return _save(fig, path, dpi)


def _scheme_density(init: dict, lo: float, hi: float):
    """(xs, pdf) of the layer-independent schemes (normal, uniform), else None."""
    name = init.get("name")
    xs = [lo + (hi - lo) * i / 400 for i in range(401)]
    if name == "normal" and init.get("std", 0) > 0:
        m, s = init["mean"], init["std"]
        return xs, [math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi)) for x in xs]
    if name == "uniform":
        a, b = init["low"], init["high"]
        return xs, [1 / (b - a) if a <= x <= b else 0.0 for x in xs]
    return None


def initial_weight_histogram(record: RunRecord, path: Path, dpi: int) -> Path | None:
    """Histogram of every initial weight (biases excluded), one colour per layer."""
    init_path = record.run_dir / "checkpoints" / "init.pt"
    if not init_path.exists():
        return None
    import torch

    state = torch.load(init_path, weights_only=True)
    weights = {k: v.flatten().tolist() for k, v in state.items() if k.endswith("weight")}
    everything = [v for vs in weights.values() for v in vs]
    lo, hi = min(everything), max(everything)
    init = record.summary.get("config", {}).get("init", {})
    if init.get("name") == "normal":  # show the whole bell, not just where the few draws fell
        lo = min(lo, init["mean"] - 3 * init["std"])
        hi = max(hi, init["mean"] + 3 * init["std"])
    elif init.get("name") == "uniform":
        lo, hi = min(lo, init["low"]), max(hi, init["high"])
    if lo == hi:  # constant init: one bar, centred, visible
        lo, hi = lo - 0.5, hi + 0.5
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    ax.hist(list(weights.values()), bins=41, range=(lo, hi), histtype="barstacked",
            color=[color(i) for i in range(len(weights))], label=list(weights))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    density = _scheme_density(init, lo, hi)
    if density is not None:
        # Expected count per bin = N * pdf * bin width: where the draws should pile up.
        xs, pdf = density
        bin_width = (hi - lo) / 41
        ax.plot(xs, [len(everything) * p * bin_width for p in pdf], color="black",
                linewidth=1.5, label=f"{init.get('name')} density")
    ax.set_xlabel("initial weight value")
    ax.set_ylabel("number of weights")
    ax.set_title(f"Initial weights: {describe_init(init)}  ({len(everything)} weights)")
    ax.legend(fontsize=8)
    return _save(fig, path, dpi)


def load_model(record: RunRecord, state: dict):
    """The run's MLP with ``state`` loaded, in eval mode (for figures drawn from checkpoints)."""
    from omegaconf import OmegaConf

    from initlab.model import build_model

    cfg = OmegaConf.create(record.summary["config"])
    model = build_model(cfg.model, cfg.act)
    model.load_state_dict(state)
    model.eval()
    return model


def plane_grid(data: dict, pad: float = 0.5, n: int = 200):
    """An n x n grid (gx, gy) over every point of the data set, ``pad`` wider on each side."""
    import torch

    X_all = torch.cat([data["X_train"], data["X_dev"], data["X_test"]])
    x0, x1 = X_all[:, 0].min().item() - pad, X_all[:, 0].max().item() + pad
    y0, y1 = X_all[:, 1].min().item() - pad, X_all[:, 1].max().item() + pad
    return torch.meshgrid(torch.linspace(x0, x1, n), torch.linspace(y0, y1, n), indexing="xy")


def draw_probability(ax, model, gx, gy):
    """P(class 1) of ``model`` over the grid, the 0.5 contour where it crosses; returns the
    filled contour (for a colour bar)."""
    import torch

    with torch.no_grad():
        prob = torch.sigmoid(model(torch.stack([gx.flatten(), gy.flatten()], 1))).reshape(gx.shape)
    mesh = ax.contourf(gx, gy, prob, levels=torch.linspace(0, 1, 11).tolist(), cmap="RdBu_r",
                       alpha=0.6)
    if prob.min() < 0.5 < prob.max():
        ax.contour(gx, gy, prob, levels=[0.5], colors="black", linewidths=1.5)
    return mesh


def scatter_classes(ax, X, y, split: str, size: float = 18) -> None:
    for label, marker, c in ((0, "o", PALETTE[0]), (1, "^", PALETTE[3])):
        pts = X[y == label]
        ax.scatter(pts[:, 0], pts[:, 1], marker=marker, s=size, color=c, edgecolor="white",
                   linewidth=0.5, label=f"{split}, class {label}")


def decision_boundary(record: RunRecord, path: Path, dpi: int) -> Path | None:
    """P(y=1) of the best-on-dev model over the plane, with the test points on top."""
    run_dir = record.run_dir
    if not (run_dir / "checkpoints" / "best.pt").exists() or not (run_dir / "data.pt").exists():
        return None
    import torch

    model = load_model(record, torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True))
    data = torch.load(run_dir / "data.pt", weights_only=True)
    gx, gy = plane_grid(data)
    fig, ax = plt.subplots(figsize=(6, 5), constrained_layout=True)
    mesh = draw_probability(ax, model, gx, gy)
    fig.colorbar(mesh, ax=ax, label="P(class 1)")
    scatter_classes(ax, data["X_test"], data["y_test"], "test")
    acc = record.summary.get("metrics", {}).get("test", {}).get("acc")
    ax.set_title(f"Decision boundary (best-on-dev model, test acc {acc:.3f})" if acc is not None
                 else "Decision boundary")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path, dpi)


def render_figures(record: RunRecord, fmt: str = "png", dpi: int = 120) -> list[Path]:
    """Draw every figure the record has data for; returns the files written."""
    _style()
    out = record.figures_dir
    written: list[Path | None] = []
    if record.metrics:
        written.append(loss_and_accuracy(record, out / f"loss_accuracy.{fmt}", dpi))
    if record.grad_norms:
        written.append(grad_norm_by_layer(record, out / f"grad_norm_by_layer.{fmt}", dpi))
        if record.grad_norms[-1]["step"] > 0:
            written.append(grad_norm_over_time(record, out / f"grad_norm_over_time.{fmt}", dpi))
    if record.weights:
        written.append(weights_over_time(record, out / f"weights_over_time.{fmt}", dpi))
    written.append(initial_weight_histogram(record, out / f"initial_weights.{fmt}", dpi))
    written.append(decision_boundary(record, out / f"decision_boundary.{fmt}", dpi))
    from initlab.report.layer_figures import render_layer_figures

    written.extend(render_layer_figures(record, fmt=fmt, dpi=dpi))
    return [p for p in written if p is not None]
