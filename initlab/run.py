"""One run, start to end: checks -> the engine (a stack of one) -> the record, then the report.

:func:`run` is pure with respect to Hydra (a composed config and a folder: tests call it);
:func:`run_from_hydra` is the ``@hydra.main`` body: failures become one line and a
``failed`` summary, never a traceback.
"""

import signal
import sys
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from initlab.budget import check_budget
from initlab.config import ConfigError, validate
from initlab.interrupts import Interrupted
from initlab.job import epochs_in_record, fail_job, mark_record, save_traceback
from initlab.record import ERROR_FILE, REPORT_ERROR_FILE, STATUS_INTERRUPTED


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "trainer.device=cuda but no CUDA GPU is available here; "
            "use trainer.device=cpu or trainer.device=auto"
        )
    return torch.device(name)


def _console(quiet: bool):
    from rich.console import Console

    return Console(quiet=quiet, stderr=False)


class ProgressBar:
    """A rich progress bar over epochs with its ETA, showing a single run's latest train loss
    and dev accuracy (``n_dev`` given); the engine calls it at most every few tenths of a
    second (a redraw costs ~0.4 ms). A batched sweep's chunks use it too (``label``)."""

    def __init__(self, console, epochs: int, n_dev: int | None = None, label: str = "training"):
        from rich import progress as p

        self.n_dev = n_dev
        # auto_refresh off: no background thread competing with training for the GIL.
        self.progress = p.Progress(
            p.TextColumn(f"[bold]{label}"), p.BarColumn(), p.MofNCompleteColumn(),
            p.TextColumn("{task.fields[status]}"), p.TimeElapsedColumn(),
            p.TimeRemainingColumn(), console=console, transient=False, auto_refresh=False)
        self.task = self.progress.add_task("training", total=epochs, status="")

    def __enter__(self) -> "ProgressBar":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def __call__(self, epoch: int, epochs: int, metrics: Any) -> None:
        status = ""
        if metrics is not None and self.n_dev:
            loss, _, _, dev_correct = metrics[:, 0].tolist()
            status = f"loss {loss:.4f}  dev acc {dev_correct / self.n_dev:.3f}"
        self.progress.update(self.task, completed=epoch, status=status, refresh=True)


def run(cfg: DictConfig, out_dir: Path, quiet: bool = False) -> dict[str, Any]:
    """Train the configured network (the engine's stack of one) and write its complete
    record, streamed as it trains and ending with its diagnosis, to ``out_dir``; drawing is
    the separate report step (:func:`report_job`). SIGINT/SIGTERM end it with status
    ``interrupted``. Returns the summary; ConfigError for a bad config, before any write."""
    from contextlib import nullcontext

    from initlab.engine import train_group

    validate(cfg)
    check_budget(cfg, out_dir)
    device = resolve_device(cfg.trainer.device)
    bar = (ProgressBar(_console(quiet), cfg.trainer.epochs, cfg.data.n_dev)
           if cfg.trainer.progress and not quiet else None)
    with bar or nullcontext():
        [summary] = train_group([cfg], [Path(out_dir)], device=str(device), progress=bar)
    return summary


class JobFailed(CompactHydraException):
    """A job of a sweep failed and said why in one line; the sweep goes on, then exits non-zero."""


def report_job(cfg: Any, out_dir: Path, in_sweep: bool, job_label: str = "") -> bool:
    """The report step after a complete run, as ``cfg.report`` asks: what ``initlab report``
    does, with the figure and table sets chosen for the context. One that fails leaves the
    record as it is, saves its traceback and says how to retry, in one line. Returns whether
    it succeeded."""
    r = cfg.report
    figures = r.figures if r.figures != "auto" else ("none" if in_sweep else "key")
    tables = r.tables if r.tables != "auto" else ("line" if in_sweep else "brief")
    page = str(r.page).lower()  # OmegaConf keeps `report.page=true` as the string "True"
    page = page == "true" or (page == "auto" and not in_sweep)
    if r.quiet and figures == "none" and not page:
        return True
    try:
        from initlab.report import render_run

        render_run(out_dir, console=_console(r.quiet), fmt=r.format, dpi=r.dpi, figures=figures,
                   tables=tables, job_label=job_label, page=page)
    except Exception as e:  # noqa: BLE001 - the record is complete and stays so
        where = save_traceback(out_dir, REPORT_ERROR_FILE)
        print(f"initlab: error: the report failed: {type(e).__name__}: {e} ({where}; retry "
              f"with `initlab report {out_dir}`)", file=sys.stderr, flush=True)
        return False
    return True


def _fail(out_dir: Path, message: str, multirun: bool) -> None:
    fail_job(out_dir, message)
    if not multirun:
        sys.exit(2)
    raise JobFailed(message)


def _interrupted(out_dir: Path, summary: dict[str, Any] | None, signum: int) -> None:
    """One line for an interrupted run, then exit 128 + signal (130 for SIGINT, 143 for
    SIGTERM); in a sweep the exit stops the sweep and its comparison is still drawn."""
    name = signal.Signals(signum).name
    if summary is None:  # aborted at once (a second signal, or one outside training)
        unsaved = mark_record(out_dir, STATUS_INTERRUPTED, f"aborted by {name}")
        epochs = epochs_in_record(out_dir)  # as mark_record counted them in metrics.csv
        where = f"aborted by {name} after epoch {epochs}"
    else:
        unsaved = None
        where = f"interrupted by {name} after epoch {summary.get('epochs_run')}"
    print(f"initlab: {where}; the record up to there is in {out_dir} "
          f"(`initlab report {out_dir}`)" + (f"; {unsaved}" if unsaved else ""), file=sys.stderr)
    sys.exit(128 + signum)


def run_from_hydra(cfg: DictConfig) -> None:
    """Body of the @hydra.main function: run into Hydra's output dir, then the report step;
    fail in one line."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    quiet = bool(cfg.report.quiet)
    # In a sweep, one line per job: the progress bar is for single runs.
    if multirun and cfg.report.tables in ("auto", "line"):
        cfg.trainer.progress = False
    try:
        summary = run(cfg, out_dir, quiet=quiet)
    except ConfigError as e:
        _fail(out_dir, str(e), multirun)
    except Interrupted as e:
        _interrupted(out_dir, None, e.signum)
    except KeyboardInterrupt:  # Ctrl-C before or after training's own handler
        _interrupted(out_dir, None, signal.SIGINT)
    except Exception as e:
        where = save_traceback(out_dir, ERROR_FILE)
        _fail(out_dir, f"{type(e).__name__}: {e} ({where})", multirun)
    if summary["status"] == STATUS_INTERRUPTED:
        _interrupted(out_dir, summary, signal.Signals[summary["signal"]])
    label = ""
    if multirun:
        label = f"job {hydra_cfg.job.num} " + (" ".join(hydra_cfg.overrides.task) or "(defaults)")
    if not report_job(cfg, out_dir, in_sweep=multirun, job_label=label) and not multirun:
        sys.exit(1)
