"""The run record: the files of a run directory, their one writer and their one reader.

The record is the only bridge between training and reporting. Its layout is a contract
(tests and other tools read it)::

    summary.json        status, seed, epochs_run, metrics, best_epoch, timing, device, versions
    metrics.csv         one row per epoch
    grad_norms.csv      one row per parameter per optimizer step (step 0 = first step)
    activations.csv     one row per hidden layer per log epoch
    activation_hists.csv  one row per histogram bin per hidden layer per log epoch
    units.csv           one row per hidden unit per log epoch (activity over the train set)
    weights.csv         one row per weight value per log epoch (small models only)
    weight_stats.csv    quantiles of each weight matrix per log epoch (any model size)
    checkpoints/        init.pt, best.pt, last.pt   (plain state dicts)
                        epochs.pt: {epoch: state dict} at a few log epochs (small models)
    data.pt             the tensors trained and evaluated on
    tables/*.txt        every table printed at the end, as text
    figures/*.png       every figure

The reader needs neither torch nor matplotlib: it reads JSON and CSV only.
"""

import csv
import json
import math
import os
from collections.abc import Iterable
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

# Every CSV's columns, declared once.
COLUMNS = {
    "metrics.csv": ("epoch", "train_loss", "train_acc", "dev_loss", "dev_acc"),
    "grad_norms.csv": ("step", "epoch", "param", "norm"),
    "activations.csv": ("epoch", "layer", "mean", "std", "frac_zero", "frac_saturated"),
    "weights.csv": ("epoch", "param", "index", "value"),
    # Each (epoch, layer) histogram spans that layer's own finite [min, max] at that epoch.
    "activation_hists.csv": ("epoch", "layer", "bin", "low", "high", "count"),
    "weight_stats.csv": ("epoch", "param", "min", "p05", "p25", "p50", "p75", "p95", "max"),
    "units.csv": ("epoch", "layer", "unit", "frac_active", "frac_saturated"),
}
EPOCH_CHECKPOINTS = "checkpoints/epochs.pt"
SUMMARY = "summary.json"
ERROR_FILE = "error.txt"  # the traceback of a run that failed
REPORT_ERROR_FILE = "report_error.txt"  # the traceback of a report step that failed
# Files a run writes while it trains (appended at log epochs, see RecordWriter.append_csv).
STREAMED_CSVS = ("metrics.csv", "grad_norms.csv")
# Everything a run (and its report) may leave in its directory: what `overwrite=true` clears.
RECORD_PATHS = (SUMMARY, *COLUMNS, "data.pt", "checkpoints", "tables", "figures", ERROR_FILE,
                REPORT_ERROR_FILE, ".hydra", "initlab.log")


class Status(str, Enum):
    """How a run ended, as summary.json ``status`` says (docs: README, "The record").

    - ``running``: training or writing; a running record whose process is gone is shown
      as stopped (see :func:`describe_status`).
    - ``completed``: every planned epoch ran.
    - ``diverged``: stopped early because a loss or gradient norm became NaN/Inf; the
      record holds everything up to there.
    - ``interrupted``: stopped by SIGINT (Ctrl-C) or SIGTERM (SLURM, submitit, kill);
      the record holds everything measured up to there.
    - ``failed``: an error in the configuration or the program; ``error`` says which.
    """

    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


STATUS_RUNNING = Status.RUNNING.value
STATUS_COMPLETED = Status.COMPLETED.value
STATUS_DIVERGED = Status.DIVERGED.value
STATUS_INTERRUPTED = Status.INTERRUPTED.value
STATUS_FAILED = Status.FAILED.value
# Statuses whose final metrics mean something (an interrupted run's are those up to the stop).
FINISHED_STATUSES = (STATUS_COMPLETED, STATUS_DIVERGED, STATUS_INTERRUPTED)


class RecordError(Exception):
    """A path is not a readable run record; the message is one line for the user."""


@contextmanager
def _replacing(path: Path):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` at once.

    A reader never sees half a file, and a failed write (a full disk, a kill) keeps the
    old file and leaves no temporary one behind.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    with _replacing(path) as tmp:
        tmp.write_text(text)


class RecordWriter:
    """Writes the files of one run directory; every whole-file write is atomic."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def write_summary(self, summary: dict[str, Any]) -> None:
        _atomic_write_text(self.run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")

    def write_text(self, name: str, text: str) -> None:
        _atomic_write_text(self.run_dir / name, text)

    def write_csv(self, name: str, rows: Iterable[Iterable[Any]]) -> None:
        with _replacing(self.run_dir / name) as tmp, tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS[name])
            writer.writerows(rows)

    def start_csv(self, name: str) -> None:
        """An empty CSV (its header only) that :meth:`append_csv` then grows."""
        self.write_csv(name, ())

    def append_csv(self, name: str, rows: Iterable[Iterable[Any]]) -> None:
        """Append rows to a CSV begun with :meth:`start_csv`: written as training goes, so a
        killed run keeps every row flushed before the kill. Flushed to the OS, not fsynced:
        a process that dies loses nothing flushed; only a machine crash could."""
        with (self.run_dir / name).open("a", newline="") as f:
            csv.writer(f).writerows(rows)

    def save_tensors(self, relpath: str, tensors: dict) -> None:
        import torch

        path = self.run_dir / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        with _replacing(path) as tmp:
            torch.save(tensors, tmp)


def _number(text: str) -> float:
    return float(text) if text != "" else math.nan


@dataclass
class RunRecord:
    """Everything a reporter needs from a run directory, as plain Python values."""

    run_dir: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    overrides: list[str]
    metrics: list[dict[str, float]] = field(default_factory=list)
    grad_norms: list[dict[str, Any]] = field(default_factory=list)
    activations: list[dict[str, Any]] = field(default_factory=list)
    weights: list[dict[str, Any]] = field(default_factory=list)
    activation_hists: list[dict[str, Any]] = field(default_factory=list)
    weight_stats: list[dict[str, Any]] = field(default_factory=list)
    units: list[dict[str, Any]] = field(default_factory=list)

    @property
    def figures_dir(self) -> Path:
        return self.run_dir / "figures"

    @property
    def param_names(self) -> list[str]:
        return list(self.summary.get("param_shapes", {}))

    def grad_norm_series(self) -> dict[str, list[tuple[int, float]]]:
        """param -> [(step, norm), ...] in step order."""
        series: dict[str, list[tuple[int, float]]] = {name: [] for name in self.param_names}
        for row in self.grad_norms:
            series.setdefault(row["param"], []).append((row["step"], row["norm"]))
        return series


def layer_of(param: str) -> str:
    """fc3.weight -> fc3."""
    return param.rsplit(".", 1)[0]


def layer_number(layer: str) -> int:
    """fc12 -> 12, so layers sort in depth order rather than as text (fc2 before fc10)."""
    digits = "".join(ch for ch in layer if ch.isdigit())
    return int(digits) if digits else 0


def _read_csv(path: Path, text_columns: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        with path.open(newline="") as f:
            return [
                {k: (v if k in text_columns else _number(v)) for k, v in row.items()}
                for row in csv.DictReader(f)
            ]
    except (ValueError, TypeError, csv.Error) as e:
        # A truncated or hand-edited file is bad input: one line, not a traceback.
        raise RecordError(f"{path} is not a valid initlab CSV ({e})") from None


def _int_columns(rows: list[dict[str, Any]], *columns: str) -> list[dict[str, Any]]:
    for row in rows:
        for c in columns:
            try:
                row[c] = int(row[c])
            except (ValueError, TypeError, OverflowError):
                raise RecordError(f"column {c!r} holds {row[c]!r}, not a whole number") from None
    return rows


def read_record(run_dir: Path) -> RunRecord:
    """Load a run directory; raises RecordError when ``run_dir`` is not a run record."""
    run_dir = Path(run_dir)
    summary_path = run_dir / SUMMARY
    if not run_dir.is_dir():
        raise RecordError(f"{run_dir} is not a directory")
    if not summary_path.exists():
        raise RecordError(f"{run_dir} is not an initlab run directory (no {SUMMARY})")
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as e:
        raise RecordError(f"{summary_path} is not valid JSON ({e})") from None
    config, overrides = {}, []
    hydra_dir = run_dir / ".hydra"
    if (hydra_dir / "config.yaml").exists():
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(OmegaConf.load(hydra_dir / "config.yaml"))
        if (hydra_dir / "overrides.yaml").exists():
            overrides = list(OmegaConf.load(hydra_dir / "overrides.yaml"))
    return RunRecord(
        run_dir=run_dir,
        summary=summary,
        config=config,
        overrides=overrides,
        metrics=_int_columns(_read_csv(run_dir / "metrics.csv"), "epoch"),
        grad_norms=_int_columns(
            _read_csv(run_dir / "grad_norms.csv", ("param",)), "step", "epoch"
        ),
        activations=_int_columns(_read_csv(run_dir / "activations.csv", ("layer",)), "epoch"),
        weights=_int_columns(_read_csv(run_dir / "weights.csv", ("param",)), "epoch", "index"),
        activation_hists=_int_columns(
            _read_csv(run_dir / "activation_hists.csv", ("layer",)), "epoch", "bin"
        ),
        weight_stats=_int_columns(_read_csv(run_dir / "weight_stats.csv", ("param",)), "epoch"),
        units=_int_columns(_read_csv(run_dir / "units.csv", ("layer",)), "epoch", "unit"),
    )
