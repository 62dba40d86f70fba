"""One job's record through its life, for every launcher, alone or as a member of a stack
(:mod:`initlab.engine`): :class:`MemberRecord` writes its ``running`` summary (with the
identity of the process that writes it), data.pt and init.pt up front, metric and
gradient-norm rows as the engine streams them, then the log-epoch tables, checkpoints and
the final summary with its diagnosis; :func:`mark_record` and :func:`save_traceback` are
what a failure leaves. Torch-free to import (tensors are imported where they are used).
"""

import itertools
import json
import math
import platform
import time
import traceback
from contextlib import suppress
from pathlib import Path
from typing import Any

from initlab import __version__
from initlab.group_record import GroupRecordWriter, GroupSlot
from initlab.record import (
    EPOCH_CHECKPOINTS,
    ERROR_FILE,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    SUMMARY,
    GradNormTable,
    RecordWriter,
    RunRecord,
    grad_norm_ends,
    process_identity,
    read_overrides,
)
from initlab.view import to_plain


def library_versions() -> dict[str, str]:
    """The versions a record was written with (matplotlib's from its metadata: no import)."""
    from importlib.metadata import version

    import hydra
    import omegaconf
    import torch

    return {"initlab": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "hydra": hydra.__version__, "omegaconf": omegaconf.__version__,
            "matplotlib": version("matplotlib"), "rich": version("rich")}


class MemberRecord:
    """The record of one member of a stack (a single run is a stack of one): in the job's
    folder, or, for a job that keeps none (a :class:`GroupSlot`), rows of its group's
    record (:mod:`initlab.group_record`: the summary, metrics and gradient norms at log
    steps; the other tables are built for the diagnosis only)."""

    def __init__(self, where: "Path | GroupSlot", cfg: Any, overrides: list[str] | None, device: Any,
                 versions: dict[str, str], launcher: str | None = None,
                 group: "GroupRecordWriter | None" = None):
        from initlab.model import parameter_shapes

        self.slot = where if isinstance(where, GroupSlot) else None
        self.group = group if self.slot is not None else None
        self.run_dir = self.slot.run_dir if self.slot is not None else Path(where)
        self.writer = None if self.group is not None else RecordWriter(self.run_dir)
        self.cfg = cfg
        self.names = list(parameter_shapes(cfg.model, cfg.data.dim))
        self.overrides = None if overrides is None else [str(o) for o in overrides]
        # process: a reader that finds it gone shows a `running` record as stopped.
        self.summary: dict[str, Any] = {
            "status": STATUS_RUNNING, "seed": cfg.seed, "device": str(device),
            "config": to_plain(cfg), "versions": versions, "process": process_identity(),
            "epochs_run": 0, **({"launcher": launcher} if launcher is not None else {})}
        if self.group is not None:
            self.group.job_row(self.slot.job, self.summary, self.overrides, self.slot.files())
        else:  # compact while running (the C encoder; a group writes thousands of these)
            self.writer.write_summary(self.summary, indent=None)
        self.streamed = {"metrics.csv": False, "grad_norms.csv": False}
        self.data: dict[str, Any] = {}

    def save(self, summary: dict[str, Any]) -> None:
        """The final summary: summary.json, or the job's last row in its group's record."""
        if self.group is not None:
            self.group.job_row(self.slot.job, summary, self.overrides)
        else:
            self.writer.write_summary(summary)

    def save_start(self, splits: Any, names: list[str], init: list[Any]) -> None:
        """data.pt and checkpoints/init.pt, before training (a job in a group record keeps no
        tensors: its folder, made on demand, trains it again)."""
        self.data = {k: v.contiguous() for k, v in splits.as_dict().items()}
        if self.writer is not None:
            self.writer.save_tensors("data.pt", self.data)
            self.writer.save_tensors("checkpoints/init.pt", _state(names, init))

    def _append(self, name: str, body: str) -> None:
        if not self.streamed[name]:
            self.writer.write_csv_body(name, body)  # header and the first rows
            self.streamed[name] = True
        elif body:
            self.writer.append_csv_body(name, body)

    def stream(self, metrics: list[list[float]], first_epoch: int, first_step: int, norms: Any,
               steps_per_epoch: int, epochs_run: int) -> None:
        """Append epochs ``first_epoch``.. of metrics ([train loss, train correct, dev loss,
        dev correct] each) and gradient norms (steps, params), then say so in summary.json."""
        from initlab import recorders

        d = self.cfg.data
        rows = recorders.metric_rows(metrics, first_epoch, d.n_train, d.n_dev)
        steps = range(first_step, first_step + norms.shape[0]) if norms is not None else ()
        epochs = [s // steps_per_epoch + 1 for s in steps]
        if self.group is not None:  # the group's summary row says running until the end
            self.group.metric_rows(self.slot.job, rows)
            if norms is not None:
                # The log steps: step 0 and the last step of each log epoch.
                t = self.cfg.trainer
                keep = [k for k, (step, epoch) in enumerate(zip(steps, epochs))
                        if step == 0 or ((step + 1) % steps_per_epoch == 0
                                         and recorders.log_epoch_due(epoch, t.log_every, t.epochs))]
                self.group.grad_norm_rows(self.slot.job, [steps[k] for k in keep],
                                          [epochs[k] for k in keep], norms[keep].tolist())
            return
        self._append("metrics.csv", self.writer.number_rows("metrics.csv", rows))
        if norms is not None:
            table = GradNormTable(self.names, list(steps), epochs, norms.tolist())
            self._append("grad_norms.csv", table.csv_body())
        self.summary.update(epochs_run=epochs_run, steps_run=epochs_run * steps_per_epoch,
                            updated=time.time())
        self.writer.write_summary(self.summary, indent=None)

    def finish(self, group: Any, i: int, final: dict[str, Any], grad_norms: Any, last: list,
               best: list, signal_name: str | None) -> dict[str, Any]:
        """The member's remaining files and its final summary with the diagnosis, which sees
        the record built from memory (tests check it equals what read_record gives)."""
        from initlab import recorders as r
        from initlab.diagnose import diagnose
        from initlab.signal import member_signal

        writer, epochs_run = self.writer, group.epochs_done(i)
        steps_run = epochs_run * group.steps_per_epoch
        d = self.cfg.data
        tables: dict[str, list[tuple]] = {
            "metrics": r.metric_rows(group.metrics[:epochs_run, :, i].tolist(), 1, d.n_train, d.n_dev)}
        grad_table = GradNormTable(
            group.names, list(range(steps_run)), [s // group.steps_per_epoch + 1 for s in
                                                  range(steps_run)],
            grad_norms[:steps_run].tolist()) if group.record_grad_norms else None

        def views(name: str) -> list[tuple[int, list]]:
            return [(epoch, snapshot[name][rows[i]].tolist())
                    for epoch, rows, snapshot in group.logs if i in rows and name in snapshot]

        def write(name: str, rows) -> None:
            tables[name] = list(rows)
            if writer is not None:
                writer.write_csv_body(f"{name}.csv", writer.number_rows(f"{name}.csv", tables[name]))

        # A job in a group record keeps only what its diagnosis reads (its folder, made on
        # demand, has every table).
        figures_only = ("weight_stats", "activation_hists") if writer is None else ()
        if group.record_weights:
            bounds = list(itertools.accumulate([math.prod(group.shapes[n]) for n in group.names],
                                               initial=0))
            write("weights", r.weight_rows(group.names, [
                (e, [flat[a:b] for a, b in itertools.pairwise(bounds)]) for e, flat in views("weights")]))
        if group.record_weight_stats and "weight_stats" not in figures_only:
            write("weight_stats", r.weight_stats_rows(group.weight_names, views("weight_stats")))
        if group.record_activations:
            for name, rows in (("activations", r.activation_stats_rows), ("units", r.unit_rows),
                               ("activation_hists", r.histogram_rows)):
                if name not in figures_only:
                    write(name, rows(group.hidden_layers, views(name)))
        tensors: dict[str, Any] = {}
        if group.save_tensors:
            tensors["init"] = _state(group.names, [p[i] for p in group.init_state])
            for name, stacked in (("best", best), ("last", last)):
                tensors[name] = _state(group.names, [p[i] for p in stacked])
                if writer is not None:
                    writer.save_tensors(f"checkpoints/{name}.pt", tensors[name])
        if group.checkpoint_epochs is not None:
            tensors[EPOCH_CHECKPOINTS] = {
                epoch: _state(group.names, [p[rows[i]] for p in params])
                for epoch, rows, params in group.checkpoints if i in rows
            }
            if writer is not None:
                writer.save_tensors(EPOCH_CHECKPOINTS, tensors[EPOCH_CHECKPOINTS])

        summary = self.summary
        summary.update(
            status=group.status[i], epochs_run=epochs_run, steps_run=steps_run, updated=time.time(),
            stop_reason=group.stop_reason[i],
            signal=signal_name if group.status[i] == STATUS_INTERRUPTED else None,
            best_epoch=int(group.best_epoch[i]),
            metrics={split: {"loss": values[0, i].item(), "acc": values[1, i].item() / n}
                     for (split, values), n in zip(final.items(), (d.n_train, d.n_dev, d.n_test))},
            param_shapes=dict(group.shapes), n_params=group.n_params,
            init_signal=member_signal(group.init_signal, i, group.layer_names, self.cfg,
                                      group.layer_shapes),
        )
        record = RunRecord(run_dir=self.run_dir, summary=summary, config=summary["config"],
                           overrides=(read_overrides(self.run_dir) if self.overrides is None
                                      else self.overrides), grad_norm_table=grad_table)
        for name, rows in tables.items():
            record.give_rows(name, rows)
        record._tensors.update(tensors)
        record._tensors["data.pt"] = self.data or {k: v.contiguous() for k, v in
                                                   group.splits[i].as_dict().items()}
        summary["diagnosis"] = [f.as_dict() for f in diagnose(record)]
        summary["grad_norms"] = grad_norm_ends(record)
        return summary

    def failed(self, error: Exception) -> dict[str, Any]:
        """A member whose record could not be finished: its record says failed and why
        (the traceback beside it); the other members of its stack go on."""
        if self.group is not None:
            where = self.group.save_error(self.slot.job, traceback.format_exc())
            summary = {**self.summary, "status": STATUS_FAILED,
                       "error": f"{type(error).__name__}: {error} (traceback in {where})"}
            self.group.job_row(self.slot.job, summary, self.overrides)
            return summary
        run_dir = self.run_dir
        message = f"{type(error).__name__}: {error} ({save_traceback(run_dir, ERROR_FILE)})"
        unsaved = mark_record(run_dir, STATUS_FAILED, message)
        return {**self.summary, "status": STATUS_FAILED,
                "error": message + (f"; {unsaved}" if unsaved else "")}


def _state(names: list[str], tensors: list[Any]) -> dict[str, Any]:
    # clone: a saved view would drag the whole stacked storage into the file.
    return {name: t.clone() for name, t in zip(names, tensors)}


# --------------------------------------------------------------------------- failures
def mark_record(out_dir: Path, status: str, message: str) -> str | None:
    """Set a record's status, keeping what its summary says, its epochs counted in the
    metrics.csv it holds. Never raises: returns why it could not write (a full disk)."""
    path = out_dir / SUMMARY
    try:
        summary = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(summary, dict):
            summary = {}
    except (OSError, ValueError):
        summary = {}
    summary.update(status=status, error=message)
    with suppress(OSError):  # as many epochs as metrics.csv holds whole rows: they agree
        with (out_dir / "metrics.csv").open("rb") as f:
            summary["epochs_run"] = max(0, f.read().count(b"\n") - 1)
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


def fail_job(out_dir: Path, message: str, label: str = "") -> None:
    """A job that failed: its record says so and why (:func:`mark_record`), and one line
    says it to the user (naming the job in a sweep)."""
    import sys

    unsaved = mark_record(out_dir, STATUS_FAILED, message)
    print(f"initlab: error: {label + ': ' if label else ''}{message}"
          + (f"; {unsaved}" if unsaved else ""), file=sys.stderr, flush=True)


def save_traceback(out_dir: Path, name: str) -> str:
    """Save the current traceback under ``out_dir``; returns where, or why it could not."""
    try:
        RecordWriter(out_dir).write_text(name, traceback.format_exc())
    except OSError as e:
        return f"traceback not saved: {e.strerror or e}"
    return f"traceback in {out_dir / name}"


def epochs_in_record(out_dir: Path) -> int:
    try:
        return json.loads((out_dir / SUMMARY).read_text()).get("epochs_run", 0)
    except (OSError, ValueError, AttributeError):
        return 0
