"""Decision boundaries (checkpoints, data.pt): P(class 1) over the plane for the best-on-dev
model and at the log epochs of checkpoints/epochs.pt, as an image in 10 % steps with the
0.5 contour; class markers show on either end of the colour map."""

from pathlib import Path

import numpy as np
from matplotlib import colors as mcolors

from initlab.custom import code_missing
from initlab.options import input_size
from initlab.record import RunRecord
from initlab.report.plotting import colorbar_beside, figure, plt, run_config, run_title, save, suptitle

BEST, DATA = "checkpoints/best.pt", "data.pt"
CLASS_MARKERS = ((0, "o", "white", "0.1"), (1, "^", "0.1", "white"))  # label, marker, face, edge
PROBABILITY_CMAP = mcolors.ListedColormap(plt.get_cmap("RdBu_r")(np.linspace(0.05, 0.95, 10)))
PROBABILITY_NORM = mcolors.BoundaryNorm(np.linspace(0, 1, 11), 10)


def has_boundary(record: RunRecord, checkpoint: str = BEST) -> bool:
    # A custom activation's module rebuilds the model: skipped where it does not import.
    return (record.run_dir / checkpoint).exists() and (record.run_dir / DATA).exists() and \
        input_size(run_config(record)) == 2 and not code_missing(run_config(record), ("act",))


def load_activation(record: RunRecord):
    """The run's hidden activation as the engine applies it (:func:`initlab.model.feature_major`),
    for figures drawn from checkpoints."""
    from omegaconf import OmegaConf

    from initlab.model import feature_major, make_activation

    return feature_major(make_activation(OmegaConf.create(run_config(record)).act))


def plane_grid(data: dict, pad: float = 0.5, n: int = 120):
    """An n x n grid (gx, gy) over every point of the data set, ``pad`` wider on each side."""
    import torch

    X_all = torch.cat([data["X_train"], data["X_dev"], data["X_test"]])
    x0, x1 = X_all[:, 0].min().item() - pad, X_all[:, 0].max().item() + pad
    y0, y1 = X_all[:, 1].min().item() - pad, X_all[:, 1].max().item() + pad
    return torch.meshgrid(torch.linspace(x0, x1, n), torch.linspace(y0, y1, n), indexing="xy")


# Grid points per forward pass: a wide net's hidden tensor is points x width floats, so a
# 120 x 120 grid through a width-100,000 layer in one call would take 5.8 GB.
MAX_GRID_ACTIVATIONS = 1 << 24


def probability(act, state: dict, gx, gy) -> np.ndarray:
    """P(class 1) of the net with parameters ``state`` (fc1.weight, fc1.bias, ...) over the grid."""
    import torch

    from initlab.model import forward

    depth = len(state) // 2
    params = [state[f"fc{k}.{kind}"].unsqueeze(0) for k in range(1, depth + 1)
              for kind in ("weight", "bias")]
    points = torch.stack([gx.flatten(), gy.flatten()])[None]  # (1, 2, points): feature-major
    widest = max(p.shape[1] for p in params[0::2])
    chunk = max(1, MAX_GRID_ACTIVATIONS // widest)
    with torch.no_grad():
        logits = torch.cat([forward(params, act, part) for part in points.split(chunk, dim=2)], 1)
    return torch.sigmoid(logits).reshape(gx.shape).double().numpy()


def draw_probability(ax, prob: np.ndarray, gx, gy):
    """P(class 1) over the grid in 10 % steps, the 0.5 contour where it crosses; returns
    the image (for a colour bar)."""
    extent = (gx.min().item(), gx.max().item(), gy.min().item(), gy.max().item())
    image = ax.imshow(prob, origin="lower", extent=extent, cmap=PROBABILITY_CMAP,
                      norm=PROBABILITY_NORM, alpha=0.7, aspect="auto", interpolation="bilinear",
                      interpolation_stage="data")
    finite = prob[np.isfinite(prob)]
    if finite.size and finite.min() < 0.5 < finite.max():
        ax.contour(gx.numpy(), gy.numpy(), prob, levels=[0.5], colors="black", linewidths=1.5)
    if finite.size < prob.size:
        ax.text(0.5, 0.5, "P(class 1) is NaN" + (" in places" if finite.size else " everywhere"),
                transform=ax.transAxes, ha="center", va="center", color="#D55E00",
                fontweight="bold")
    return image


def scatter_classes(ax, X, y, split: str, size: float = 20) -> None:
    for label, marker, face, edge in CLASS_MARKERS:
        pts = X[y == label]
        ax.scatter(pts[:, 0], pts[:, 1], marker=marker, s=size, facecolor=face, edgecolor=edge,
                   linewidth=0.7, label=f"{split}, class {label}")


def decision_boundary(record: RunRecord, path: Path, dpi: int) -> Path | None:
    """P(y=1) of the best-on-dev model over the plane, with the test points on top."""

    act = load_activation(record)
    data = record.data()
    gx, gy = plane_grid(data)
    fig, gs = figure(6.2, 5, top=0.4, left=0.7, right=1.1)
    ax = fig.add_subplot(gs[0])
    image = draw_probability(ax, probability(act, record.checkpoint("best"), gx, gy), gx, gy)
    colorbar_beside(fig, image, gs, "P(class 1)", ticks=np.linspace(0, 1, 6))
    scatter_classes(ax, data["X_test"], data["y_test"], "test")
    acc = record.summary.get("metrics", {}).get("test", {}).get("acc")
    ax.set_title(f"Decision boundary (best-on-dev model, test acc {acc:.3f})" if acc is not None
                 else "Decision boundary", fontsize=10)
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.grid(False)
    ax.legend(loc="upper right", fontsize=8, frameon=True, framealpha=0.85)
    return save(fig, path, dpi)


def decision_boundary_over_epochs(record: RunRecord, path: Path, dpi: int) -> Path | None:
    """P(class 1) over the plane at the log epochs kept in checkpoints/epochs.pt."""

    states = record.epoch_checkpoints()
    data = record.data()
    if not states:
        return None
    gx, gy = plane_grid(data, n=100)
    dev_acc = {m["epoch"]: m["dev_acc"] for m in record.metrics}
    epochs = sorted(states)
    cols = min(len(epochs), 3)
    rows = -(-len(epochs) // cols)
    fig, gs = figure(3.0 * cols + 1.6, 2.9 * rows + 1.4, rows, cols, top=0.85, bottom=0.85,
                     left=0.65, right=1.0, wspace=0.2, hspace=0.4)
    flat = [fig.add_subplot(gs[0])]
    flat += [fig.add_subplot(gs[i // cols, i % cols], sharex=flat[0], sharey=flat[0])
             for i in range(1, len(epochs))]
    act = load_activation(record)
    image = None
    for ax, epoch in zip(flat, epochs):
        image = draw_probability(ax, probability(act, states[epoch], gx, gy), gx, gy)
        scatter_classes(ax, data["X_train"], data["y_train"], "train", size=11)
        where = "at init" if epoch == 0 else (f"dev acc {dev_acc[epoch]:.2f}"
                                              if epoch in dev_acc else "")
        ax.set_title(f"epoch {epoch}" + (f" ({where})" if where else ""), fontsize=10)
        ax.grid(False)
    for i, ax in enumerate(flat):
        # Inner panels share the outer ones' ticks; a panel with none below it keeps its own.
        if i % cols:
            ax.tick_params(axis="y", labelleft=False)
        if i + cols < len(epochs):
            ax.tick_params(axis="x", labelbottom=False)
        else:
            ax.set_xlabel("x₁")
        if i % cols == 0:
            ax.set_ylabel("x₂")
    colorbar_beside(fig, image, gs, "P(class 1)", ticks=np.linspace(0, 1, 6))
    handles, labels = flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, markerscale=1.8)
    suptitle(fig, f"Decision boundary during training\n{run_title(record)}")
    return save(fig, path, dpi)
