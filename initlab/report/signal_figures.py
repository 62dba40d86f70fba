"""The signal at init: what the record's ``init_signal`` measured per layer, beside
mean-field theory's prediction (initlab.signal, initlab.theory)."""

from pathlib import Path

import numpy as np

from initlab.record import RunRecord
from initlab.report.plotting import (
    color,
    figure,
    has_zeros,
    label_layers,
    log_axes,
    run_title,
    save,
    suptitle,
)


def has_signal(record: RunRecord) -> bool:
    block = record.summary.get("init_signal")
    return isinstance(block, dict) and bool(block.get("layers"))


def signal_at_init(record: RunRecord, path: Path, dpi: int) -> Path:
    """q_l and the backpropagated |dloss/dz_l|² per layer (log scale), measured and as
    mean-field theory predicts; exact zeros (zero init) on the "= 0" strip."""
    from initlab.report.tables import signal_notes

    block = record.summary["init_signal"]
    theory = block.get("theory") or {}
    layers = block["layers"]
    x = np.arange(len(layers))
    fig, gs = figure(11 if len(layers) > 12 else 9, 4.6, 1, 2, top=1.0, wspace=1.0)
    for i, (key, title) in enumerate((("q", "mean squared pre-activation q"),
                                      ("grad_sq", "backpropagated |dloss/dz|²"))):
        series = [("measured", block.get(key), "-", "o")]
        if theory.get(key):
            series.append(("mean-field theory (infinite width)", theory[key], "--", None))
        values = [np.array([np.nan if v is None else v for v in vs], dtype=float)
                  for _, vs, _, _ in series if vs]
        log = log_axes(fig, gs[i], zero_rows=int(has_zeros(*values)))
        for k, ((label, _, ls, marker), v) in enumerate(zip(series, values)):
            log.plot(x, v, color=color(k), linestyle=ls, marker=marker, markersize=4, label=label)
        if len(values) == 2:
            with np.errstate(divide="ignore", invalid="ignore"):  # exact zeros have no ratio
                apart = np.abs(np.log(values[0] / values[1]))
            apart = apart[np.isfinite(apart)]
            if apart.size and apart.max() > np.log(2):
                # The theory is the infinite-width limit; at finite width fluctuations of q
                # compound with depth, and a map that shrinks small q faster than large
                # (GELU, SiLU) turns them into a bias upward: apart is expected, not a bug.
                title += f"\n(theory off by up to ×{np.exp(apart.max()):.2g}: finite width)"
        log.finish(xlabel="layer (input → output)")
        label_layers(log.ax, layers, "x", 8)
        log.ax.set_xlim(-0.5, len(layers) - 0.5)
        log.ax.set_title(title, fontsize=10)
        log.ax.legend(fontsize=8)
    words = ["Signal at init"]
    if theory:
        words.append(f"sigma_w² {theory['sigma_w2']:.3g}, sigma_b² {theory['sigma_b2']:.3g}: "
                     f"chi_1 {theory['chi1']:.3g}, {theory['phase']}")
    suptitle(fig, " · ".join(words + signal_notes(record)) + "\n" + run_title(record))
    return save(fig, path, dpi)
