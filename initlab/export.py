"""``initlab export tensorboard PATH``: a run record, or every job of a sweep, as TensorBoard
event files, read from the record's files only (never a live model).

A run becomes loss/{train,dev} and accuracy/{train,dev} per epoch (metrics.csv),
grad_norm/<param> per step, weights/<param> and activations/<layer> histograms at the log
epochs, hparam/<split>_<acc|loss> (the best-on-dev metrics) and its flattened config in the
HParams tab. A sweep's jobs get a folder each, named by the overrides that tell them apart,
with the sweep's HParams experiment. TensorBoard is the optional ``tensorboard`` extra,
imported only when an export runs."""

import math
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from initlab.record import (
    EPOCH_CHECKPOINTS,
    STATUS_COMPLETED,
    STATUS_DIVERGED,
    STATUS_FAILED,
    STATUS_RUNNING,
    SUMMARY,
    TENSORBOARD_DIR,
    RecordError,
    RunRecord,
    effective_status,
    open_record,
)

FORMATS = ("tensorboard",)
# Written first into every export folder: a folder holding it is an earlier export, which a
# new export may clear; any other non-empty folder is refused, never cleared.
MARKER = ".initlab-export"
INSTALL_HINT = "pip install -e '.[tensorboard]'"
SPLITS = ("test", "dev", "train")
# metrics.csv column -> scalar tag
METRIC_TAGS = {"train_loss": "loss/train", "dev_loss": "loss/dev",
               "train_acc": "accuracy/train", "dev_acc": "accuracy/dev"}
NAME_MAX = 120  # characters of a job folder's name taken from its label
WEIGHT_BINS = 30  # bins of a weight histogram, over the parameter's own range at that epoch
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+@%-]+")


class ExportError(Exception):
    """An export cannot be written as asked (an output folder in the way, no job to export);
    the message is one line for the user."""


class MissingExtra(ExportError):
    """The package an export writes with is not installed."""


def export_tensorboard(path: Path, out: Path | None = None, console=None) -> list[Path]:
    """Write the events of a run folder or of every job of a sweep folder; returns the folders
    written. ``out`` (default ``<path>/tensorboard``; a sweep's jobs in ``out/<job>/``) is
    replaced, never duplicated. RecordError or ExportError (one line) for bad input,
    MissingExtra without tensorboard."""
    from rich.console import Console

    from initlab.report.compare import MULTIRUN_FILE

    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path} does not exist")
    if not path.is_dir():
        raise RecordError(f"{path} is a file; give a run folder (holds {SUMMARY}) or a sweep "
                          f"folder (holds {MULTIRUN_FILE})")
    console = console or Console()
    out = Path(out) if out is not None else path / TENSORBOARD_DIR
    if (path / SUMMARY).exists():
        runs = [(open_record(path), out)]
        skipped: list[str] = []
    elif (path / MULTIRUN_FILE).exists():
        runs, skipped = _sweep_runs(path, out)
    else:
        raise RecordError(f"{path} is neither a run folder (no {SUMMARY}) nor a sweep folder "
                          f"(no {MULTIRUN_FILE})")
    _check_out(out)
    writer_class = summary_writer()
    hparams = _comparable([flat_hparams(record) for record, _ in runs])
    experiment = _experiment(hparams, list(dict.fromkeys(t for r, _ in runs for t in final_metrics(r))))
    sweep = runs[0][1] != out
    _clear(out)
    written = []
    runs.reverse()  # popped in job order: a job's tables are freed once its events are out
    for values in hparams:
        record, logdir = runs.pop()
        try:
            _write_run(writer_class, record, logdir, values, experiment)
        except RecordError as e:  # a table of this job is cut or hand-edited
            if not sweep:
                raise
            shutil.rmtree(logdir, ignore_errors=True)
            skipped.append(f"skipped job {record.run_dir.relative_to(path)}: {e}")
            continue
        written.append(logdir)
    if skipped:
        console.print("\n".join(skipped), highlight=False, markup=False, soft_wrap=True)
    if not written:
        raise RecordError(f"{path} holds no job whose record could be read ({'; '.join(skipped)})")
    what = f"{len(written)} job{'' if len(written) == 1 else 's'}" if sweep else "the run"
    console.print(f"TensorBoard events of {what} -> {out}\nView them with: tensorboard --logdir "
                  f"{out}", highlight=False, markup=False, soft_wrap=True)
    return written


def summary_writer():
    """torch's SummaryWriter class; MissingExtra (one line) without the tensorboard package."""
    try:
        import tensorboard  # noqa: F401 - torch.utils.tensorboard needs it, and says so less clearly
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MissingExtra("the tensorboard package is not installed; install it with "
                           f"`{INSTALL_HINT}` (or `pip install tensorboard`)") from None
    return SummaryWriter


# ----------------------------------------------------------------------------- sweeps
def _sweep_runs(sweep_dir: Path, out: Path) -> tuple[list[tuple[RunRecord, Path]], list[str]]:
    """(record, its folder under ``out``) for every job of the sweep that has a record, and a
    line for each job left out."""
    from initlab.report.compare import distinguishing_labels, sweep_jobs

    slots = sweep_jobs(sweep_dir)
    labels, _ = distinguishing_labels([slot.overrides for slot in slots])
    names = job_folder_names(labels, [slot.name for slot in slots])
    runs, skipped = [], []
    for slot, name in zip(slots, names):
        if slot.job_dir is None or not (slot.job_dir / SUMMARY).is_file():
            why = slot.note or ("never started" if slot.job_dir is None else f"no {SUMMARY}")
            skipped.append(f"skipped job {slot.name}: {why}")
            continue
        try:
            runs.append((open_record(slot.job_dir), out / name))
        except RecordError as e:
            skipped.append(f"skipped job {slot.name}: {e}")
    if not runs:
        raise RecordError(f"{sweep_dir} holds no job with a record yet"
                          + (f" ({'; '.join(skipped)})" if skipped else ""))
    return runs, skipped


def job_folder_names(labels: list[str], job_names: list[str]) -> list[str]:
    """A folder name per job: its label with spaces as "," and unsafe characters as "_";
    the job's own folder name where the label is empty, too long or not unique."""
    def safe(text: str) -> str:
        return _UNSAFE.sub("_", text.replace(" ", ",")).strip("._") or ""

    names = [n if len(n := safe(label)) <= NAME_MAX else "" for label in labels]
    counts = Counter(names)
    job_safe = [safe(j.replace("/", "_")) or f"job{i}" for i, j in enumerate(job_names)]
    return [n if n and counts[n] == 1 else (f"{n}_{j}" if n else j)
            for n, j in zip(names, job_safe)]


# ------------------------------------------------------------------------ one run
def _check_out(out: Path) -> None:
    """ExportError unless ``out`` is new, empty or an earlier export (it holds MARKER): any
    other folder is someone else's, never cleared."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ExportError(f"{out} is a file, not a folder; give another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ExportError(f"{out} is not empty and holds no earlier initlab export; "
                          "give a new or empty folder as --out")


def _clear(out: Path) -> None:
    """Make ``out`` (checked by :func:`_check_out`) an empty export folder with its marker."""
    if out.is_dir() and any(out.iterdir()):
        try:
            shutil.rmtree(out)
        except OSError as e:
            raise ExportError(f"cannot remove the earlier export {out}: {e.strerror or e}") from None
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("TensorBoard events written by `initlab export tensorboard`; "
                              "the next export into this folder replaces them.\n")


def _write_run(writer_class, record: RunRecord, logdir: Path, hparams: dict[str, Any],
               experiment) -> None:
    """Every series of one run into ``logdir``, with the HParams ``experiment`` summary."""
    logdir.mkdir(parents=True, exist_ok=True)
    with writer_class(log_dir=str(logdir)) as writer:
        _write_metrics(writer, record)
        _write_grad_norms(writer, record)
        _write_weights(writer, record)
        _write_activations(writer, record)
        _write_hparams(writer, record, hparams, experiment)


def _add_summary(writer, summary, step: int) -> None:
    # One Summary proto per step holding every tag of that step: a third of the cost of one
    # add_scalar call per value (measured: 12 against 40 us a value) for runs of 10^5 steps.
    writer._get_file_writer().add_summary(summary, step)


def _scalars(writer, step: int, values: dict[str, float]) -> None:
    from tensorboard.compat.proto.summary_pb2 import Summary

    if values:
        _add_summary(writer, Summary(value=[Summary.Value(tag=tag, simple_value=float(v))
                                            for tag, v in values.items()]), step)


def _write_metrics(writer, record: RunRecord) -> None:
    for row in record.metrics:
        _scalars(writer, row["epoch"], {tag: row[c] for c, tag in METRIC_TAGS.items() if c in row})


def _write_grad_norms(writer, record: RunRecord) -> None:
    table = record.grad_norm_table()
    if table is not None:
        tags = [f"grad_norm/{p}" for p in table.params]
        for step, norms in zip(table.steps, table.norms):
            _scalars(writer, step, dict(zip(tags, norms)))
        return
    by_step: dict[int, dict[str, float]] = {}  # rows not one per parameter per step
    for param, points in record.grad_norm_series().items():
        for step, norm in points:
            by_step.setdefault(step, {})[f"grad_norm/{param}"] = norm
    for step in sorted(by_step):
        _scalars(writer, step, by_step[step])


def weight_snapshots(record: RunRecord) -> dict[int, dict[str, list[float]]]:
    """epoch -> parameter -> values: weights.csv's log epochs (small models), else
    checkpoints/epochs.pt, else init.pt and last.pt; {} for a lean record."""
    snapshots: dict[int, dict[str, list[float]]] = {}
    for row in record.weights:
        snapshots.setdefault(row["epoch"], {}).setdefault(row["param"], []).append(row["value"])
    if snapshots:
        return snapshots
    states: dict[int, dict] = {}
    if (record.run_dir / EPOCH_CHECKPOINTS).is_file():
        states = dict(record.epoch_checkpoints())
    else:
        for name, epoch in (("init", 0), ("last", record.summary.get("epochs_run"))):
            if epoch is not None and (record.run_dir / "checkpoints" / f"{name}.pt").is_file():
                states[int(epoch)] = record.checkpoint(name)
    return {int(epoch): {p: t.detach().double().reshape(-1).tolist() for p, t in state.items()}
            for epoch, state in sorted(states.items())}


def _write_weights(writer, record: RunRecord) -> None:
    from tensorboard.compat.proto.summary_pb2 import Summary

    order = {p: i for i, p in enumerate(record.param_names)}
    for epoch, params in sorted(weight_snapshots(record).items()):
        for param in sorted(params, key=lambda p: order.get(p, len(order))):
            histogram = histogram_of(params[param])
            if histogram is not None:
                _add_summary(writer, Summary(value=[Summary.Value(tag=f"weights/{param}",
                                                                  histo=histogram)]), epoch)


def histogram_of(values: list[float], bins: int = WEIGHT_BINS):
    """A HistogramProto of the finite ``values`` in ``bins`` equal bins over their range
    (one for a constant); None when none is finite. Not ``add_histogram``: its fixed buckets
    end near 1e12, so a diverging run's weights (1e16) would fail it."""
    import numpy as np
    from tensorboard.compat.proto.summary_pb2 import HistogramProto

    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]  # a diverged run's NaN/Inf: no place on an axis
    if not array.size:
        return None
    low, high = float(array.min()), float(array.max())
    if high > low:
        counts, edges = np.histogram(array, bins=bins, range=(low, high))
        limits = edges[1:].tolist()
    else:
        counts, limits = np.array([array.size]), [high]
    with np.errstate(over="ignore"):  # 1e200 squared is inf: a true sum of squares
        sum_squares = float(np.dot(array, array))
    return HistogramProto(min=low, max=high, num=float(array.size), sum=float(array.sum()),
                          sum_squares=sum_squares, bucket_limit=limits,
                          bucket=counts.astype(float).tolist())


def _write_activations(writer, record: RunRecord) -> None:
    """activation_hists.csv's own bins: bucket i spans [low_i, high_i] (TensorBoard takes
    each bucket's upper limit, the first one's lower limit being the minimum)."""
    from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary

    hists: dict[tuple[int, str], list[dict]] = {}
    for row in record.activation_hists:
        hists.setdefault((row["epoch"], row["layer"]), []).append(row)
    for (epoch, layer), rows in sorted(hists.items()):
        rows.sort(key=lambda r: r["bin"])
        low, high = rows[0]["low"], rows[-1]["high"]
        counts = [r["count"] for r in rows]
        total = sum(c for c in counts if math.isfinite(c))
        if not (math.isfinite(low) and math.isfinite(high)) or total <= 0:
            continue  # every activation NaN/Inf (a diverged run): nothing was counted
        # The values themselves are not in the record: their sums are taken at bin centres.
        centres = [(r["low"] + r["high"]) / 2 for r in rows]
        histogram = HistogramProto(
            min=low, max=high, num=total,
            sum=sum(c * x for c, x in zip(counts, centres)),
            sum_squares=sum(c * x * x for c, x in zip(counts, centres)),
            bucket_limit=[r["high"] for r in rows], bucket=counts)
        _add_summary(writer, Summary(value=[Summary.Value(tag=f"activations/{layer}",
                                                          histo=histogram)]), epoch)


# ------------------------------------------------------------------------- hparams
def flat_hparams(record: RunRecord) -> dict[str, Any]:
    """The run's configuration as dotted keys with scalar values (``optim.lr``: 0.1), plus
    its ``status``; lists, nulls and the keys that only say how a run is shown are left out."""
    from initlab.report.compare import NOT_EXPERIMENT_KEYS

    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
            return
        key = prefix[:-1]
        if f"{key}=".startswith(NOT_EXPERIMENT_KEYS):
            return
        if isinstance(node, bool):  # as Hydra spells them; a number 1/0 would read worse
            flat[key] = "true" if node else "false"
        elif isinstance(node, (int, float, str)):
            flat[key] = node

    walk(record.config, "")
    flat["status"] = effective_status(record.summary)
    return flat


def _comparable(hparam_sets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The jobs' hparams with one type per key: a key that is a number in one job and text
    in another (``init.gain``: null and 1.0 are both left, so rare) is text in all."""
    mixed = {k for k in {k for h in hparam_sets for k in h}
             if len({isinstance(h[k], str) for h in hparam_sets if k in h}) > 1}
    return [{k: str(v) if k in mixed else v for k, v in h.items()} for h in hparam_sets]


def final_metrics(record: RunRecord) -> dict[str, float]:
    """hparam/<split>_<acc|loss> of the best-on-dev model (summary.json ``metrics``)."""
    metrics = record.summary.get("metrics") or {}
    return {f"hparam/{split}_{key}": float(metrics[split][key])
            for split in SPLITS for key in ("acc", "loss")
            if isinstance(metrics.get(split), dict) and isinstance(metrics[split].get(key), (int, float))}


def _plugin_summary(tag: str, **content):
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData(**content)
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data))])


def _experiment(hparam_sets: list[dict[str, Any]], metric_tags: list[str]):
    """The HParams experiment: every key any run has (``act.negative_slope`` of lrelu jobs
    too), its type and values, whether it differs between runs, and the metrics."""
    from tensorboard.plugins.hparams import api_pb2, metadata

    infos = []
    for key in dict.fromkeys(k for h in hparam_sets for k in h):
        values = [h[key] for h in hparam_sets if key in h]
        info = api_pb2.HParamInfo(name=key, differs=len(set(values)) > 1 or len(values) < len(hparam_sets))
        if isinstance(values[0], str):
            info.type = api_pb2.DATA_TYPE_STRING
            info.domain_discrete.extend(sorted(set(values)))
        else:
            info.type = api_pb2.DATA_TYPE_FLOAT64
            finite = [float(v) for v in values if math.isfinite(v)]
            if finite:
                info.domain_interval.min_value = min(finite)
                info.domain_interval.max_value = max(finite)
        infos.append(info)
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=[
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t)) for t in metric_tags])
    return _plugin_summary(metadata.EXPERIMENT_TAG, experiment=experiment)


_SESSION_STATUS = {STATUS_COMPLETED: "STATUS_SUCCESS", STATUS_DIVERGED: "STATUS_FAILURE",
                   STATUS_FAILED: "STATUS_FAILURE", STATUS_RUNNING: "STATUS_RUNNING"}


def _write_hparams(writer, record: RunRecord, hparams: dict[str, Any], experiment) -> None:
    """The run as an HParams session (its hparams, its final metrics as scalars of the same
    run, how it ended) with the sweep's ``experiment``, written into every job: the tab reads
    it from whichever run it finds first."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    metrics = final_metrics(record)
    step = int(record.summary.get("best_epoch") or record.summary.get("epochs_run") or 0)
    _add_summary(writer, experiment, 0)
    start = plugin_data_pb2.SessionStartInfo()
    for key, value in hparams.items():
        if isinstance(value, str):
            start.hparams[key].string_value = value
        else:
            start.hparams[key].number_value = value
    _add_summary(writer, _plugin_summary(metadata.SESSION_START_INFO_TAG, session_start_info=start), 0)
    _scalars(writer, step, metrics)
    status = api_pb2.Status.Value(_SESSION_STATUS.get(effective_status(record.summary), "STATUS_UNKNOWN"))
    _add_summary(writer, _plugin_summary(metadata.SESSION_END_INFO_TAG, session_end_info=(
        plugin_data_pb2.SessionEndInfo(status=status))), step)
