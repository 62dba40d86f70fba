"""One run, start to end: seed -> data -> model -> init -> trainer -> record, then the report.

:func:`run` is pure with respect to Hydra: it takes a composed config and an output
directory, so tests call it directly. :func:`run_from_hydra` is the body of the
``@hydra.main`` function: it finds the output directory and turns failures into one
line for the user and a ``failed`` summary, never a traceback.
"""

import json
import os
import platform
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf

from initlab import __version__
from initlab.budget import check_budget
from initlab.callbacks import (
    Checkpointer,
    EpochCheckpointer,
    LiveRecord,
    LogSchedule,
    ProgressBar,
    cpu_state_dict,
    spread_log_epochs,
)
from initlab.config import ConfigError, validate
from initlab.data import make_splits
from initlab.diagnose import diagnose
from initlab.init import apply_init, data_dependent_init_
from initlab.interrupts import Interrupted, StopOnSignal
from initlab.model import activation_backward, bounded_activation, build_model, make_activation
from initlab.record import (
    ERROR_FILE,
    REPORT_ERROR_FILE,
    STATUS_COMPLETED,
    STATUS_DIVERGED,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    SUMMARY,
    RecordWriter,
    grad_norm_ends,
    read_record,
)
from initlab.recorders import (
    ActivationRecorder,
    GradNormRecorder,
    WeightRecorder,
    WeightStatsRecorder,
)
from initlab.signal import measure as measure_signal
from initlab.signal import member_signal, model_params, stacked_input
from initlab.trainer import Trainer, evaluate

# Independent random streams, so changing one part (say the init) leaves the others alone.
DATA_STREAM, INIT_STREAM, SHUFFLE_STREAM = 0, 1, 2

# Model copies at a few log epochs (for decision-boundary small multiples) cost
# EPOCH_CHECKPOINT_COUNT x params of host memory and disk, so only small models keep them.
EPOCH_CHECKPOINT_COUNT = 6
EPOCH_CHECKPOINT_MAX_PARAMS = 100_000


def stream_seed(seed: int, stream: int) -> int:
    return seed * 1000 + stream


def _generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, stream))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "trainer.device=cuda but no CUDA GPU is available here; "
            "use trainer.device=cpu or trainer.device=auto"
        )
    return torch.device(name)


def make_optimizer(optim_cfg, params) -> torch.optim.Optimizer:
    if optim_cfg.name == "sgd":
        return torch.optim.SGD(params, lr=optim_cfg.lr, momentum=optim_cfg.momentum,
                               weight_decay=optim_cfg.weight_decay)
    if optim_cfg.name == "adam":
        return torch.optim.Adam(params, lr=optim_cfg.lr, betas=tuple(optim_cfg.betas),
                                weight_decay=optim_cfg.weight_decay)
    raise ConfigError(f"optim.name={optim_cfg.name!r} is not one of: sgd, adam")


def build_recorders(cfg: DictConfig, model: torch.nn.Module, X_train: torch.Tensor) -> dict[str, Any]:
    """The recorders ``cfg.trainer.recorders`` asks for, sized to the model."""
    schedule = LogSchedule(cfg.trainer.log_every)
    wanted = set(cfg.trainer.recorders)
    n_params = sum(p.numel() for p in model.parameters())
    recorders: dict[str, Any] = {}
    if "grad_norms" in wanted:
        recorders["grad_norms"] = GradNormRecorder(model)
    if "weights" in wanted:
        if n_params <= cfg.trainer.weights_max_params:
            recorders["weights"] = WeightRecorder(model, schedule)
        recorders["weight_stats"] = WeightStatsRecorder(model, schedule)
    if "activations" in wanted:
        bounded = bounded_activation(cfg.act)
        recorders["activations"] = ActivationRecorder(model, X_train, bounded, schedule)
    if n_params <= EPOCH_CHECKPOINT_MAX_PARAMS and cfg.trainer.get("save_tensors", True):
        recorders["epoch_checkpoints"] = EpochCheckpointer(
            spread_log_epochs(cfg.trainer.log_every, cfg.trainer.epochs, EPOCH_CHECKPOINT_COUNT)
        )
    return recorders


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    import hydra
    import omegaconf

    return {
        "initlab": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "hydra": hydra.__version__,
        "omegaconf": omegaconf.__version__,
        # From the installed metadata: importing matplotlib costs ~0.3 s, and a sweep's
        # launcher process has no figure to draw.
        "matplotlib": version("matplotlib"),
        "rich": version("rich"),
    }


def _console(quiet: bool):
    from rich.console import Console

    return Console(quiet=quiet, stderr=False)


def run(cfg: DictConfig, out_dir: Path, quiet: bool = False) -> dict[str, Any]:
    """Train the configured network and write its complete record to ``out_dir``.

    The record is written as training goes (metrics and gradient norms at log epochs, see
    :class:`~initlab.callbacks.LiveRecord`) and ends with its diagnosis (summary.json
    ``diagnosis``), computed from the files just written, before anything is drawn;
    drawing is the separate report step (:func:`report_run`, the same code path as
    ``initlab report``). SIGINT/SIGTERM stop training after the current epoch and the
    record is completed with status ``interrupted``. Returns the summary. Raises
    ConfigError for a bad config before anything is written.
    """
    started = time.perf_counter()
    validate(cfg)
    check_budget(cfg, out_dir)
    device = resolve_device(cfg.trainer.device)
    out_dir = Path(out_dir)
    writer = RecordWriter(out_dir)
    summary: dict[str, Any] = {
        "status": STATUS_RUNNING,
        "seed": cfg.seed,
        "device": str(device),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": library_versions(),
        # Who writes this record: a reader that finds the status still `running` and this
        # process gone says the run stopped without a word (record.describe_status).
        "process": {"pid": os.getpid(), "host": socket.gethostname()},
        "epochs_run": 0,
    }
    writer.write_summary(summary)

    if device.type == "cpu" and cfg.trainer.threads is not None:
        torch.set_num_threads(cfg.trainer.threads)
    torch.manual_seed(cfg.seed)
    splits = make_splits(cfg.data, stream_seed(cfg.seed, DATA_STREAM))
    model = build_model(cfg.model, cfg.act, cfg.data.dim)
    apply_init(model, cfg.init, cfg.act, _generator(cfg.seed, INIT_STREAM))
    layers = [getattr(model, f"fc{k}") for k in range(1, model.depth + 1)]
    act = make_activation(cfg.act)
    data_dependent_init_([fc.weight for fc in layers], [fc.bias for fc in layers], act,
                         splits.X_train, cfg.init)
    # Signal propagation at init (initlab.signal), on the model as it starts.
    measured = measure_signal(model_params(model), act, activation_backward(act),
                              stacked_input(splits.X_train), splits.y_train.unsqueeze(0))
    init_signal = member_signal(measured, 0, [f"fc{k}" for k in range(1, model.depth + 1)], cfg,
                                [tuple(fc.weight.shape) for fc in layers])
    model.to(device)
    device_splits = splits.to(device)
    optimizer = make_optimizer(cfg.optim, model.parameters())
    # The data and the initial weights first: a run killed at any point keeps what it
    # trained on and started from.
    save_tensors = cfg.trainer.get("save_tensors", True)
    if save_tensors:
        writer.save_tensors("data.pt", {k: v.contiguous() for k, v in splits.as_dict().items()})
        writer.save_tensors("checkpoints/init.pt", cpu_state_dict(model))

    checkpointer = Checkpointer()
    recorders = build_recorders(cfg, model, device_splits.X_train)
    n_params = sum(p.numel() for p in model.parameters())

    def heartbeat(trainer) -> None:
        summary.update(epochs_run=trainer.state.epoch, steps_run=trainer.state.step,
                       updated=time.time())
        writer.write_summary(summary)

    streamed = [r for r in recorders.values() if hasattr(r, "stream")]
    live = LiveRecord(writer, LogSchedule(cfg.trainer.log_every), streamed, heartbeat,
                      min_interval_s=cfg.trainer.flush_every_s)
    stop_on_signal = StopOnSignal()
    callbacks: list[Any] = [stop_on_signal, checkpointer, *recorders.values(), live]
    if cfg.trainer.progress and not quiet:
        callbacks.append(ProgressBar(_console(quiet)))

    trainer = Trainer(
        model,
        optimizer,
        device_splits,
        epochs=cfg.trainer.epochs,
        batch_size=cfg.trainer.batch_size,
        callbacks=callbacks,
        shuffle_gen=_generator(cfg.seed, SHUFFLE_STREAM),
    )
    with stop_on_signal:
        state = trainer.fit()
        record_started = time.perf_counter()
        live.flush(trainer)
        if stop_on_signal.received:
            status = STATUS_INTERRUPTED
        else:
            status = STATUS_COMPLETED if state.stop_reason is None else STATUS_DIVERGED

        # Final metrics are those of the best-on-dev model, as the textbook's runner reports.
        model.load_state_dict(checkpointer.best_state)
        final = {}
        for split in ("train", "dev", "test"):
            X, y = getattr(device_splits, f"X_{split}"), getattr(device_splits, f"y_{split}")
            loss, acc = evaluate(model, X, y)
            final[split] = {"loss": loss, "acc": acc}

        for recorder in recorders.values():
            if recorder not in streamed:
                recorder.save(writer)
        if save_tensors:
            writer.save_tensors("checkpoints/init.pt", checkpointer.init_state)
            writer.save_tensors("checkpoints/best.pt", checkpointer.best_state)
            writer.save_tensors("checkpoints/last.pt", checkpointer.last_state)

        summary.update(
            status=status,
            stop_reason=state.stop_reason,
            signal=stop_on_signal.name or None,
            epochs_run=state.epoch,
            steps_run=state.step,
            best_epoch=state.best_epoch,
            metrics=final,
            param_shapes={k: list(v.shape) for k, v in checkpointer.init_state.items()},
            n_params=n_params,
            init_signal=init_signal,
        )
        # The diagnosis reads the record just written (the reporters' one bridge), with the
        # final summary in memory, so summary.json is written once more, complete.
        record = read_record(out_dir)
        record.summary = summary
        summary["diagnosis"] = [f.as_dict() for f in diagnose(record)]
        summary["grad_norms"] = grad_norm_ends(record)
        now = time.perf_counter()
        summary["timing"] = {"train_s": state.train_s, "record_s": now - record_started,
                             "total_s": now - started}
        writer.write_summary(summary)
    return summary


def report_run(cfg: DictConfig, out_dir: Path, summary: dict[str, Any], in_sweep: bool,
               job_label: str = "") -> None:
    """The report step after a run, as ``cfg.report`` asks (see ReportConfig): what
    ``initlab report`` does, with the figure and table sets chosen for the context."""
    r = cfg.report
    figures = r.figures if r.figures != "auto" else ("none" if in_sweep else "key")
    tables = r.tables if r.tables != "auto" else ("line" if in_sweep else "brief")
    page = str(r.page).lower()  # OmegaConf keeps `report.page=true` as the string "True"
    page = page == "true" or (page == "auto" and not in_sweep)
    if r.quiet and figures == "none" and not page:
        return
    from initlab.report import render_run

    render_run(out_dir, console=_console(r.quiet), fmt=r.format, dpi=r.dpi, figures=figures,
               tables=tables, job_label=job_label, page=page)


class JobFailed(CompactHydraException):
    """A job of a sweep failed and has said why in one line; the other jobs still run and
    the sweep exits non-zero without repeating it."""


def mark_record(out_dir: Path, status: str, message: str) -> str | None:
    """Keep what the summary already says (seed, config, epochs so far) and set its status.

    Never raises: on a full disk or a vanished folder it returns why the record could not
    be updated, for the one line the user sees.
    """
    path = out_dir / SUMMARY
    try:
        summary = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(summary, dict):
            summary = {}
    except (OSError, ValueError):
        summary = {}
    summary.update(status=status, error=message)
    try:
        RecordWriter(out_dir).write_summary(summary)
    except OSError as e:
        # A full disk has no room for the new file beside the old: write over the old one
        # in place instead (its blocks are already allocated), so the status still tells.
        try:
            _overwrite_in_place(path, json.dumps(summary) + "\n")
        except OSError:
            return f"could not update {path}: {e.strerror or e}"
    return None


def _overwrite_in_place(path: Path, text: str) -> None:
    data = text.encode()
    if not path.exists() or len(data) > path.stat().st_size:
        # Only the old file's own blocks are sure to be there: keep just what must be said.
        keep = {k: v for k, v in json.loads(text).items()
                if k in ("status", "error", "seed", "epochs_run", "steps_run")}
        data = (json.dumps(keep) + "\n").encode()
    with path.open("r+b") as f:
        f.write(data)
        f.truncate()
        f.flush()


def _save_traceback(out_dir: Path, name: str) -> str:
    """Save the current traceback under ``out_dir``; returns where, or why it could not."""
    try:
        RecordWriter(out_dir).write_text(name, traceback.format_exc())
    except OSError as e:
        return f"traceback not saved: {e.strerror or e}"
    return f"traceback in {out_dir / name}"


def _fail(out_dir: Path, message: str, multirun: bool) -> None:
    unsaved = mark_record(out_dir, STATUS_FAILED, message)
    print(f"initlab: error: {message}" + (f"; {unsaved}" if unsaved else ""), file=sys.stderr)
    if not multirun:
        sys.exit(2)
    raise JobFailed(message)


def _interrupted(out_dir: Path, summary: dict[str, Any] | None, signum: int, at_once: bool) -> None:
    """One line for an interrupted run, then exit 128 + signal (130 for SIGINT, 143 for
    SIGTERM); in a sweep the exit stops the sweep and its comparison is still drawn."""
    name = signal.Signals(signum).name
    if summary is None:  # aborted at once: keep what was flushed, say so
        epochs = _epochs_in_record(out_dir)
        unsaved = mark_record(out_dir, STATUS_INTERRUPTED,
                              f"aborted by a second {name}; the record holds what was written "
                              f"up to epoch {epochs}")
        where = f"aborted by {name} after epoch {epochs}"
    else:
        unsaved = None
        where = f"interrupted by {name} after epoch {summary.get('epochs_run')}"
    print(f"initlab: {where}; the record up to there is in {out_dir} "
          f"(`initlab report {out_dir}`)" + (f"; {unsaved}" if unsaved else ""), file=sys.stderr)
    sys.exit(128 + signum)


def _epochs_in_record(out_dir: Path) -> int:
    try:
        return json.loads((out_dir / SUMMARY).read_text()).get("epochs_run", 0)
    except (OSError, ValueError, AttributeError):
        return 0


def run_from_hydra(cfg: DictConfig) -> None:
    """Body of the @hydra.main function: run into Hydra's output dir, then the report step;
    fail in one line. A report that fails leaves the complete record as it is."""
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
        _interrupted(out_dir, None, e.signum, at_once=True)
    except KeyboardInterrupt:  # Ctrl-C before or after training's own handler
        _interrupted(out_dir, None, signal.SIGINT, at_once=True)
    except Exception as e:
        where = _save_traceback(out_dir, ERROR_FILE)
        _fail(out_dir, f"{type(e).__name__}: {e} ({where})", multirun)
    if summary["status"] == STATUS_INTERRUPTED:
        _interrupted(out_dir, summary, signal.Signals[summary["signal"]], at_once=False)
    label = ""
    if multirun:
        label = f"job {hydra_cfg.job.num} " + (" ".join(hydra_cfg.overrides.task) or "(defaults)")
    try:
        report_run(cfg, out_dir, summary, in_sweep=multirun, job_label=label)
    except Exception as e:  # the record is complete and stays so; say how to retry
        where = _save_traceback(out_dir, REPORT_ERROR_FILE)
        print(f"initlab: error: the report failed: {type(e).__name__}: {e} ({where}; retry "
              f"with `initlab report {out_dir}`)", file=sys.stderr)
        if not multirun:
            sys.exit(1)
