"""The signal at init: what the record's ``init_signal`` measured per layer, beside
mean-field theory's prediction (initlab.signal, initlab.theory)."""

from pathlib import Path

import numpy as np

from initlab.record import RunRecord
from initlab.report.plotting import color, figure, run_title, save, suptitle


def has_signal(record: RunRecord) -> bool:
    block = record.summary.get("init_signal")
    return isinstance(block, dict) and bool(block.get("layers"))


def _series(values, n: int) -> np.ndarray:
    values = values or [None] * n
    return np.array([np.nan if v is None or v <= 0 else v for v in values], dtype=float)


def signal_at_init(record: RunRecord, path: Path, dpi: int) -> Path:
    """Two panels by layer, log scale: the mean squared pre-activation q_l and the
    backpropagated signal ||dloss/dz_l||^2, measured (solid) and predicted (dashed)."""
    block = record.summary["init_signal"]
    theory = block.get("theory") or {}
    layers = block["layers"]
    x = np.arange(len(layers))
    fig, gs = figure(10 if len(layers) > 12 else 8, 4.2, 1, 2, top=0.95)
    for i, (key, base) in enumerate((("q", "mean squared pre-activation q"),
                                      ("grad_sq", "backpropagated |dloss/dz|^2"))):
        ax = fig.add_subplot(gs[i])
        measured = _series(block.get(key), len(layers))
        ax.plot(x, measured, marker="o", color=color(0), label="measured", markersize=4)
        title = base
        if theory.get(key):
            predicted = _series(theory[key], len(layers))
            ax.plot(x, predicted, linestyle="--", color=color(1),
                    label="mean-field theory (infinite width)")
            apart = np.abs(np.log(measured / predicted))
            if np.isfinite(apart).any() and np.nanmax(apart) > np.log(2):
                # The theory is the infinite-width limit; at finite width fluctuations of q
                # compound with depth, and a map that shrinks small q faster than large
                # (GELU, SiLU) turns them into a bias upward: apart is expected, not a bug.
                title += (f"\n(apart by up to ×{np.exp(np.nanmax(apart)):.2g}: the theory is the "
                          "infinite-width limit)")
        if np.isfinite(measured).any():
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9 if "\n" in title else 10)
        ax.set_xlabel("layer (input → output)")
        step = max(1, len(layers) // 8)
        ax.set_xticks(x[::step], [layers[k] for k in range(0, len(layers), step)])
        ax.legend(fontsize=8)
    words = ["Signal at init"]
    if theory:
        words.append(f"sigma_w² {theory['sigma_w2']:.3g}, sigma_b² {theory['sigma_b2']:.3g}: "
                     f"chi_1 {theory['chi1']:.3g}, {theory['phase']}")
    if block.get("grad_factor") is not None:
        words.append(f"gradient ×{block['grad_factor']:.3g} a layer toward the input")
    if block.get("born_dead"):
        words.append(f"born dead (constant output; dead layer {block.get('dead_layer')})")
    suptitle(fig, " · ".join(words) + "\n" + run_title(record))
    return save(fig, path, dpi)
