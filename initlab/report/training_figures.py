"""How training went, from metrics.csv: train and dev loss and accuracy over epochs."""

from pathlib import Path

import numpy as np

from initlab.record import RunRecord
from initlab.report.plotting import (
    DEV_COLOR,
    TRAIN_COLOR,
    LogAxis,
    epoch_axis,
    figure,
    mark_non_finite,
    note_non_finite,
    run_title,
    save,
    set_accuracy_axis,
    set_value_limits,
    spans_decades,
    suptitle,
)

# A loss whose finite values span more decades than this is drawn on a log axis, else a
# diverging run would flatten the rest.
LOG_LOSS_DECADES = 3


def loss_and_accuracy(record: RunRecord, path: Path, dpi: int) -> Path:
    epochs = np.array([m["epoch"] for m in record.metrics], dtype=float)
    cols = {k: np.array([m[k] for m in record.metrics], dtype=float)
            for k in ("train_loss", "dev_loss", "train_acc", "dev_acc")}
    losses = np.concatenate([cols["train_loss"], cols["dev_loss"]])
    log_loss = spans_decades(losses, LOG_LOSS_DECADES)
    fig, gs = figure(10, 4, 1, 2, top=0.65, wspace=0.9)
    ax_loss, ax_acc = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    few = len(epochs) < 3
    best = record.summary.get("best_epoch")
    for ax, key, label in ((ax_loss, "loss", "binary cross-entropy"), (ax_acc, "acc", "accuracy")):
        non_finite = 0
        log = LogAxis(ax) if key == "loss" and log_loss else None
        for split, c, ls in (("train", TRAIN_COLOR, "-"), ("dev", DEV_COLOR, "--")):
            values = cols[f"{split}_{key}"]
            kw = {"color": c, "linestyle": ls, "marker": "o" if few else None, "label": split}
            if log is not None:
                log.plot(epochs, values, **kw)
            else:
                ax.plot(epochs, values, **kw)
                non_finite += mark_non_finite(ax, epochs, values, c)
        if log is not None:
            log.finish(f"{label} (log scale)")
            non_finite = log.non_finite
        else:
            ax.set_ylabel(label)
        note_non_finite(ax, non_finite)
        if best:
            ax.axvline(best, color="grey", linestyle=":", linewidth=1, label=f"best dev (epoch {best})")
        epoch_axis(ax, epochs)
        ax.legend(fontsize=8)
    if not log_loss:
        set_value_limits(ax_loss, losses, nonnegative=True)
    set_accuracy_axis(ax_acc)
    ax_loss.set_title("Loss")
    ax_acc.set_title("Accuracy")
    suptitle(fig, run_title(record), fontsize=11)
    return save(fig, path, dpi)
