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
    index.html          the report page
    tensorboard/        TensorBoard events, once `initlab export tensorboard` wrote them

The reader needs neither torch nor matplotlib: it reads JSON and CSV only.
"""

import csv
import functools
import itertools
import json
import math
import os
import socket
from collections.abc import Mapping
from contextlib import contextmanager, suppress
from itertools import repeat
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
TENSORBOARD_DIR = "tensorboard"  # `initlab export tensorboard`'s events (initlab.export)
PAGE = "index.html"  # the report page (initlab.report.page)
# Files a run writes while it trains (appended at log epochs, see RecordWriter.append_csv_body).
STREAMED_CSVS = ("metrics.csv", "grad_norms.csv")
# Everything a run (and its report) may leave in its directory: what `overwrite=true` clears.
RECORD_PATHS = (SUMMARY, *COLUMNS, "data.pt", "checkpoints", "tables", "figures", ERROR_FILE,
                REPORT_ERROR_FILE, ".hydra", "initlab.log", TENSORBOARD_DIR, PAGE)


# How a run ended, as summary.json ``status`` says: ``running`` (training or writing; shown
# as stopped once its process is gone, :func:`effective_status`), ``completed`` (every
# planned epoch ran), ``diverged`` (a loss or gradient norm became NaN/Inf), ``interrupted``
# (SIGINT or SIGTERM), ``failed`` (``error`` says why). A record holds everything up to its end.
STATUSES = (STATUS_RUNNING, STATUS_COMPLETED, STATUS_DIVERGED, STATUS_INTERRUPTED, STATUS_FAILED) = (
    "running", "completed", "diverged", "interrupted", "failed")
# Statuses whose final metrics mean something (an interrupted run's are those up to the stop).
FINISHED_STATUSES = (STATUS_COMPLETED, STATUS_DIVERGED, STATUS_INTERRUPTED)


class LazyJSON(Mapping):
    """A JSON object kept as its text and parsed anew at each look: a comparison of 100,000
    jobs holds their init_signal blocks in ~150 MB as text, where parsed they took ~3 GB
    (each look costs ~20 us)."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def value(self) -> dict:
        """The object, parsed (once per call: keep it while it is read)."""
        return json.loads(self.text)

    def __getitem__(self, key: str) -> Any:
        return json.loads(self.text)[key]

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.text).get(key, default)

    def __iter__(self):
        return iter(json.loads(self.text))

    def __len__(self) -> int:
        return len(json.loads(self.text))

    def __bool__(self) -> bool:
        return self.text not in ("{}", "null")

    def __eq__(self, other: object) -> bool:
        return json.loads(self.text) == (dict(other) if isinstance(other, Mapping) else other)

    __hash__ = None  # type: ignore[assignment]


class FloatRow(Mapping):
    """A read-only {name: float} over names shared by many rows (one index per group) and
    the values in a compact array: a comparison of 100,000 jobs holds each job's gradient
    norms per parameter in ~0.4 KB instead of a ~2 KB dict. A missing value is NaN."""

    __slots__ = ("index", "values")

    def __init__(self, index: dict[str, int], values: list):
        from array import array

        self.index = index
        self.values = array("d", [math.nan if v is None else v for v in values])

    def __getitem__(self, key: str) -> float:
        return self.values[self.index[key]]

    def __iter__(self):
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)


class RecordError(Exception):
    """A path is not a readable run record; the message is one line for the user."""


@contextmanager
def _replacing(path: Path):
    """Yield a temporary path beside ``path`` that replaces it on success: a reader never
    sees half a file, and a failed write (a full disk, a kill) keeps the old one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise


class GradNormTable:
    """grad_norms.csv by column: ``norms[k]`` holds every parameter's norm (in ``params``
    order) at ``steps[k]``, a step of epoch ``epochs[k]``: 2000 short lists, not 8000 row
    dicts. Built by the engine from its tensors, or from the CSV's rows (:meth:`from_rows`)."""

    __slots__ = ("params", "steps", "epochs", "norms")

    def __init__(self, params: list[str], steps: list[int], epochs: list[int],
                 norms: list[list[float]]):
        self.params, self.steps, self.epochs, self.norms = params, steps, epochs, norms

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> "GradNormTable | None":
        """The table of grad_norms.csv's rows; None when they are not one row per parameter
        per step, in one parameter order, steps rising (a hand-edited or cut file)."""
        if not rows:
            return cls([], [], [], [])
        params = [r["param"] for r in itertools.takewhile(lambda r: r["step"] == rows[0]["step"], rows)]
        width = len(params)
        blocks = [rows[i:i + width] for i in range(0, len(rows), width)]
        steps = [block[0]["step"] for block in blocks]
        if (len(rows) % width or len(set(params)) != width
                or any(a >= b for a, b in zip(steps, steps[1:]))
                or any(r["step"] != block[0]["step"] or r["param"] != p
                       for block in blocks for r, p in zip(block, params))):
            return None
        return cls(params, steps, [b[0]["epoch"] for b in blocks], [[r["norm"] for r in b] for b in blocks])

    def rows(self) -> list[dict[str, Any]]:
        """The rows as grad_norms.csv holds them (:meth:`RunRecord.table`'s form)."""
        return [{"step": s, "epoch": e, "param": p, "norm": v}
                for s, e, row in zip(self.steps, self.epochs, self.norms)
                for p, v in zip(self.params, row)]

    def csv_body(self) -> str:
        """Every row as CSV text, byte for byte what csv.writer writes
        for :meth:`rows` (FLOAT_FORMAT for each float; names need no quoting): the prefix
        of each row built once per step and parameter, the numbers formatted in one pass."""
        if not self.steps or not self.params:
            return ""
        return self._template() % tuple([v for row in self.norms for v in row])

    # The %-format of the last few layouts: the jobs of a stacked sweep share theirs.
    _templates: dict[tuple, str] = {}

    def _template(self) -> str:
        key = (tuple(self.params), tuple(self.steps), tuple(self.epochs))
        template = GradNormTable._templates.get(key)
        if template is None:
            template = "".join([f"{s},{e},{p},{FLOAT_FORMAT}\r\n" for s, e in zip(self.steps, self.epochs)
                                for p in self.params])
            if len(GradNormTable._templates) >= 4:
                GradNormTable._templates.clear()
            GradNormTable._templates[key] = template
        return template


class RecordWriter:
    """Writes the files of one run directory; every whole-file write is atomic."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def write_summary(self, summary: dict[str, Any], indent: int | None = 2) -> None:
        self.write_text(SUMMARY, json.dumps(summary, indent=indent) + "\n")

    def write_text(self, name: str, text: str) -> None:
        with _replacing(self.run_dir / name) as tmp:
            tmp.write_text(text)

    @staticmethod
    def number_rows(name: str, rows: list[tuple]) -> str:
        """Rows of numbers and plain names as CSV text, byte for byte what csv.writer
        writes, as one ``%``-format: the per-cell work is C's (sweeps write millions of rows).
        %s for the text columns (names), FLOAT_FORMAT for numbers (an int below 1e9 prints as
        its str)."""
        fmt = ",".join("%s" if c in TEXT_COLUMNS else FLOAT_FORMAT for c in COLUMNS[name]) + "\r\n"
        return (fmt * len(rows)) % tuple([cell for row in rows for cell in row])

    def write_csv_numbers(self, name: str, rows: list[tuple]) -> None:
        self.write_csv_body(name, self.number_rows(name, rows))

    def write_csv_body(self, name: str, body: str) -> None:
        """A CSV whose rows are already text (:meth:`GradNormTable.csv_body`): the header
        and ``body``, replaced atomically."""
        with _replacing(self.run_dir / name) as tmp, tmp.open("w", newline="") as f:
            f.write(",".join(COLUMNS[name]) + "\r\n")
            f.write(body)

    def append_csv_body(self, name: str, body: str) -> None:
        """Append rows already text (:meth:`number_rows`) to a CSV written before: as training
        goes, so a killed run keeps every row flushed before the kill. Flushed to the OS, not
        fsynced: a process that dies loses nothing flushed; only a machine crash could."""
        with (self.run_dir / name).open("a", newline="") as f:
            f.write(body)

    def save_tensors(self, relpath: str, tensors: dict) -> None:
        import torch

        path = self.run_dir / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        with _replacing(path) as tmp:
            torch.save(tensors, tmp)


# 9 significant digits write any float32 (the model's dtype) so that it reads back exactly,
# where repr takes up to 17 (a 200-job sweep's CSVs 37% smaller, formatted 3x faster).
FLOAT_FORMAT = "%.9g"


# The record's tables, as RunRecord attributes: "metrics.csv" -> record.metrics.
TABLES = tuple(name.removesuffix(".csv") for name in COLUMNS)


class RunRecord:
    """Everything a reporter needs from a run directory, as plain Python values. Each CSV
    table (``record.metrics``, ``record.grad_norms``, ...) is a list of typed rows, given by
    the writer (:meth:`give_rows`) or read and checked on first use (a reader parses only what
    it needs)."""

    def __init__(self, run_dir: Path, summary: dict[str, Any], config: dict[str, Any],
                 overrides: list[str], grad_norm_table: "GradNormTable | None" = None):
        self.run_dir, self.summary, self.config, self.overrides = Path(run_dir), summary, config, overrides
        self._tables: dict[str, list[dict[str, Any]]] = {}
        # Tables a writer gave as tuples in COLUMNS order (give_rows): dicts built on use.
        self._row_tuples: dict[str, list[tuple]] = {}
        # grad_norms by column (given by a writer that has it, else built from the rows);
        # False: the rows have no table form (see GradNormTable.from_rows).
        self._grad_norm_table: GradNormTable | None | bool = grad_norm_table
        # Tensor files read so far (checkpoints, data.pt): each is loaded once per record.
        self._tensors: dict[str, Any] = {}

    def table(self, name: str) -> list[dict[str, Any]]:
        """The rows of ``<name>.csv`` (read and checked once; [] when the file is absent)."""
        if name not in self._tables:
            if name in self._row_tuples:
                rows = [dict(zip(COLUMNS[f"{name}.csv"], row)) for row in self._row_tuples[name]]
            elif name == "grad_norms" and isinstance(self._grad_norm_table, GradNormTable):
                rows = self._grad_norm_table.rows()
            elif name in TABLES:
                rows = self._read(name)
            else:
                raise KeyError(f"no table {name!r} in a run record (tables: {', '.join(TABLES)})")
            self._tables[name] = rows
        return self._tables[name]

    def _read(self, name: str, by_column: bool = False) -> Any:
        """A table read and checked, and its rows counted against what the summary says ran:
        fewer is a cut file; more, in a finished record, rows of another run."""
        path, summary = self.run_dir / f"{name}.csv", self.summary
        read = _read_csv(path, summary, by_column=by_column)
        epochs, steps, shapes = (summary.get(k) for k in ("epochs_run", "steps_run", "param_shapes"))
        expected, unit = ((epochs, "epochs") if name == "metrics" else
                          (steps * len(shapes), f"{len(shapes)} parameters x {steps} steps")
                          if name == "grad_norms" and steps is not None and shapes
                          and summary.get("status") in FINISHED_STATUSES else (None, ""))
        if expected and not path.exists() and name == "metrics":
            raise _bad(path, f"is missing although {SUMMARY} says {expected} epochs ran")
        n = len(next(iter(read.values()), [])) if by_column else len(read)
        if expected is not None and path.exists() and (n < expected or (
                n > expected and summary.get("status") in FINISHED_STATUSES)):
            raise _bad(path, f"has {n} rows where {SUMMARY} says {expected} ({unit}): "
                       f"{'cut short' if n < expected else 'rows of another run'}")
        return read

    def columns(self, name: str) -> dict[str, list]:
        """The rows of ``<name>.csv`` by column, in :data:`COLUMNS` order ({} when there are
        none): what a sweep's comparison reads of each of thousands of jobs (no row dicts)."""
        if name in self._tables or name in self._row_tuples or name not in TABLES:
            rows = self.tuples(name)
            return dict(zip(COLUMNS[f"{name}.csv"], map(list, zip(*rows)))) if rows else {}
        return self._read(name, by_column=True)

    def tuples(self, name: str) -> list[tuple]:
        """The rows of ``<name>.csv`` as tuples in :data:`COLUMNS` order (no dicts built when
        a writer gave them so: :meth:`give_rows`)."""
        if name not in self._row_tuples:
            columns = COLUMNS[f"{name}.csv"]  # a row built by hand may lack a column: NaN
            self._row_tuples[name] = [tuple([row.get(c, math.nan) for c in columns])
                                      for row in self.table(name)]
        return self._row_tuples[name]

    def give_rows(self, name: str, rows: list[tuple]) -> None:
        """Table ``name`` as the writer wrote it: tuples in :data:`COLUMNS` order, of the
        types a read gives back (ints, names, floats). Turned into row dicts only if read:
        a stacked sweep's diagnosis reads a few of the tables of each of thousands of jobs."""
        self._tables.pop(name, None)
        self._row_tuples[name] = rows

    def __repr__(self) -> str:
        return f"RunRecord({str(self.run_dir)!r}, tables read: {', '.join(self._tables) or 'none'})"

    def _cached(self, key: str, load):
        if key not in self._tensors:
            self._tensors[key] = load()
        return self._tensors[key]

    def checkpoint(self, name: str) -> dict:
        """checkpoints/<name>.pt, checked against ``param_shapes`` (:func:`read_checkpoint`)."""
        return self._cached(name, lambda: read_checkpoint(
            self.run_dir, name, self.summary.get("param_shapes") or {}))

    def epoch_checkpoints(self) -> dict[int, dict]:
        """checkpoints/epochs.pt, checked (:func:`read_epoch_checkpoints`)."""
        return self._cached(EPOCH_CHECKPOINTS, lambda: read_epoch_checkpoints(
            self.run_dir, self.summary.get("param_shapes") or {}))

    def data(self) -> dict:
        """data.pt, checked (:func:`read_data`)."""
        return self._cached("data.pt", lambda: read_data(self.run_dir))

    figures_dir = property(lambda self: self.run_dir / "figures")

    @property
    def param_names(self) -> list[str]:
        return list(self.summary.get("param_shapes") or {})

    def grad_norm_table(self) -> "GradNormTable | None":
        """grad_norms.csv by column (:class:`GradNormTable`), or None when its rows are not
        one per parameter per step (then read :attr:`grad_norms`)."""
        if self._grad_norm_table is None:
            self._grad_norm_table = GradNormTable.from_rows(self.grad_norms) or False
        return self._grad_norm_table or None

    def grad_norm_series(self) -> dict[str, list[tuple[int, float]]]:
        """param -> [(step, norm), ...] in step order."""
        series: dict[str, list[tuple[int, float]]] = {name: [] for name in self.param_names}
        table = self.grad_norm_table()
        if table is not None:
            for k, param in enumerate(table.params):
                series[param] = [(s, row[k]) for s, row in zip(table.steps, table.norms)]
            return series
        for row in self.grad_norms:
            series.setdefault(row["param"], []).append((row["step"], row["norm"]))
        return series


def grad_norm_ends(record: RunRecord) -> dict[str, Any]:
    """Every parameter's gradient norm at the first and at the last recorded step, and that
    last step: what a sweep's comparison shows of a run's gradients. The run keeps it in
    summary.json ``grad_norms``, so a comparison of 10,000 jobs reads no grad_norms.csv."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    last_step = None
    table = record.grad_norm_table()
    if table is not None:
        if table.steps:  # as grad_norms.csv holds them (a table built in memory is not rounded)
            first = {p: float(FLOAT_FORMAT % v) for p, v in zip(table.params, table.norms[0])}
            last = {p: float(FLOAT_FORMAT % v) for p, v in zip(table.params, table.norms[-1])}
            last_step = table.steps[-1]
        return {"first": first, "last": last, "last_step": last_step}
    for param, points in record.grad_norm_series().items():
        if points:
            first[param], last[param] = points[0][1], points[-1][1]
            last_step = max(last_step or 0, points[-1][0])
    return {"first": first, "last": last, "last_step": last_step}


def stored_grad_norm_ends(summary: dict[str, Any]) -> dict[str, Any] | None:
    """summary.json ``grad_norms`` when it has :func:`grad_norm_ends`' form, else None (an
    older record, or a hand-edited one: read grad_norms.csv instead)."""
    ends = summary.get("grad_norms")
    if not isinstance(ends, dict) or set(ends) != {"first", "last", "last_step"}:
        return None
    first, last, step = ends["first"], ends["last"], ends["last_step"]
    if not (isinstance(first, dict) and isinstance(last, dict)
            and all(isinstance(k, str) and _is_number(v) for d in (first, last) for k, v in d.items())
            and (step is None or _is_int(step))):
        return None
    return ends


for _name in TABLES:  # record.metrics, ...: the rows of metrics.csv (RunRecord.table)
    setattr(RunRecord, _name, property(lambda self, name=_name: self.table(name)))


def layer_of(param: str) -> str:
    """fc3.weight -> fc3."""
    return param.rsplit(".", 1)[0]


@functools.lru_cache(maxsize=4096)  # a sweep's comparison asks it of every job's every parameter
def layer_number(layer: str) -> int:
    """fc12 -> 12, so layers sort in depth order rather than as text (fc2 before fc10)."""
    digits = "".join(ch for ch in layer if ch.isdigit())
    return int(digits) if digits else 0


# ------------------------------------------ reading: a record is input, checked, bad in one line

STATUS_STOPPED = "stopped"  # shown for a `running` record whose process is gone; never written
# Integer columns of the CSVs; the text columns hold names; every other column is a number.
INT_COLUMNS = {"epoch", "step", "index", "bin", "unit"}
TEXT_COLUMNS = {"param", "layer"}
DATA_KEYS = ("X_train", "y_train", "X_dev", "y_dev", "X_test", "y_test")


def where_why(path, why: str) -> str:
    """"x.csv is empty", "x.csv: line 3: ..." -- a file and what is wrong with it, as one line."""
    return f"{path} {why}" if why.startswith(("is ", "has ", "holds ", "cannot ")) else f"{path}: {why}"


def _bad(path: Path, why: str) -> RecordError:
    error = RecordError(where_why(path, why))
    error.path, error.why = Path(path), why
    return error


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# summary.json's typed keys: whole numbers >= 0, objects, text.
_SUMMARY_KEYS = {**dict.fromkeys(("epochs_run", "steps_run", "best_epoch"), "count"),
                 **dict.fromkeys(("config", "process", "versions", "timing", "metrics",
                                  "param_shapes"), dict),
                 **dict.fromkeys(("error", "stop_reason", "signal", "device"), str),
                 "diagnosis": list}
_NAMED = {"count": "a whole number >= 0", dict: "an object", str: "text", list: "a list"}


def _summary_problem(summary: Any) -> str | None:
    """Why ``summary`` (parsed summary.json) is not a run summary, or None when it is one."""
    if not isinstance(summary, dict):
        return f"not a JSON object (it holds a {_kind(summary)})"
    status = summary.get("status")
    if status is None:
        return "no status (not a run summary, or cut short)"
    if status not in STATUSES:
        return f"status {status!r} is not one of {', '.join(STATUSES)}"
    for key, kind in _SUMMARY_KEYS.items():
        value = summary.get(key)
        if value is not None and not (_is_int(value) and value >= 0 if kind == "count"
                                      else isinstance(value, kind)):
            return f"{key} is {value!r} (a {_kind(value)}), not {_NAMED[kind]}"[:200]
    for split, values in (summary.get("metrics") or {}).items():
        if not isinstance(values, dict):
            return f"metrics.{split} is a {_kind(values)}, not {{loss, acc}}"
        for key in ("loss", "acc"):
            if key in values and not _is_number(values[key]):
                return f"metrics.{split}.{key} is {values[key]!r}, not a number"
    for name, shape in (summary.get("param_shapes") or {}).items():
        if not (isinstance(shape, list) and all(_is_int(n) and n >= 0 for n in shape)):
            return f"param_shapes[{name!r}] is {shape!r}, not a list of sizes"
    process = summary.get("process") or {}
    if "pid" in process and not _is_int(process["pid"]):
        return f"process.pid is {process['pid']!r}, not a process id"
    return None


def read_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json of ``run_dir``, checked field by field; RecordError (one line) if bad."""
    path = Path(run_dir) / SUMMARY
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RecordError(f"{run_dir} is not an initlab run directory (no {SUMMARY})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _bad(path, f"cannot be read ({getattr(e, 'strerror', None) or e})") from None
    if not text.strip():
        raise _bad(path, "is empty (truncated: the run was killed or the disk was full?)")
    try:
        summary = json.loads(text)
    except json.JSONDecodeError as e:
        raise _bad(path, f"is not valid JSON ({e})") from None
    problem = _summary_problem(summary)
    if problem:
        raise _bad(path, problem)
    return summary


def _float(text: str) -> float:
    return float(text) if text != "" else math.nan  # an empty cell: not measured


_CONVERTERS = {**{c: int for c in INT_COLUMNS}, **{c: str for c in TEXT_COLUMNS}}


def _cell(path: Path, line: int, column: str, text: str) -> Any:
    try:
        return _CONVERTERS.get(column, _float)(text)
    except ValueError:
        what = "a whole number" if column in INT_COLUMNS else "a number"
        raise _bad(path, f"line {line}: column {column!r} holds {text!r}, not {what}") from None


def _column(path: Path, column: str, cells: list[str]) -> list:
    # float() itself first, by one map() (a 10,000-job comparison reads millions of cells);
    # an empty cell (not measured: NaN) or a bad one takes the checked path.
    try:
        return list(map(_CONVERTERS.get(column, float), cells))
    except ValueError:
        return [_cell(path, line, column, text) for line, text in enumerate(cells, start=2)]


def _split_plain(lines: list[str], width: int) -> list[list[str]] | None:
    """The cells of CSV lines by column, by one split of the whole text, when no cell is
    quoted and every line has ``width`` cells (what initlab writes); None otherwise."""
    body = "".join(lines)
    if not body or '"' in body:
        return None
    rows = body.splitlines()
    if set(map(str.count, rows, repeat(","))) != {width - 1}:
        return None
    cells = ",".join(rows).split(",")
    return [cells[k::width] for k in range(width)]


def _read_csv(path: Path, summary: dict[str, Any] | None = None,
              by_column: bool = False) -> Any:
    """Rows of one of the record's CSVs, typed and checked ([] when absent; ``by_column``:
    {column: values}). A streamed CSV whose last line lacks its newline was cut by a kill
    in mid-write: that partial row is dropped, every complete row kept."""
    name = path.name
    columns, width = COLUMNS[name], len(COLUMNS[name])
    try:
        with path.open(newline="") as f:
            text = f.read()
    except FileNotFoundError:
        return {} if by_column else []
    except (OSError, UnicodeDecodeError) as e:
        raise _bad(path, f"cannot be read ({getattr(e, 'strerror', None) or e})") from None
    if not text:
        ran = (summary or {}).get("epochs_run")
        raise _bad(path, "is empty: truncated (not even its header)"
                   + (f" although {SUMMARY} says {ran} epochs ran" if ran else ""))
    lines = text.splitlines(keepends=True)
    if name in STREAMED_CSVS and len(lines) > 1 and not lines[-1].endswith(("\n", "\r")):
        lines = lines[:-1]
    cells = _split_plain(lines[1:], width)
    try:
        header = tuple(next(csv.reader(lines[:1])))
        body = list(csv.reader(lines[1:])) if cells is None else []
    except csv.Error as e:
        raise _bad(path, f"is not a valid CSV ({e})") from None
    if header != columns:
        raise _bad(path, f"has columns {','.join(header)}; an initlab {name} has {','.join(columns)}")
    for number, row in enumerate(body, start=2):
        if len(row) != width:
            raise _bad(path, f"line {number} has {len(row)} cells, not {width} "
                       "(truncated or hand-edited?)")
    if cells is None:
        cells = [list(c) for c in zip(*body)] if body else [[] for _ in columns]
    converted = [_column(path, c, column) for c, column in zip(columns, cells)]
    if by_column:
        return dict(zip(columns, converted)) if converted[0] else {}
    return [dict(zip(columns, row)) for row in zip(*converted)]


def _hydra_yaml(run_dir: Path, name: str, kind: type) -> Any:
    """.hydra/<name> as plain YAML values, or None where absent or unreadable (it only labels
    a run). Never resolved: a reader calls no resolver a record names (``${...}`` stays
    text). PyYAML's C loader: a sweep's comparison reads one per job."""
    try:
        import yaml

        text = (Path(run_dir) / ".hydra" / name).read_text()
        loaded = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except Exception:  # noqa: BLE001 - any YAML or OS error: no label, not a crash
        return None
    return loaded if isinstance(loaded, kind) else None


def read_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides of a run (.hydra/overrides.yaml); [] when unreadable."""
    loaded = _hydra_yaml(run_dir, "overrides.yaml", list) or []
    return [str(o) for o in loaded if isinstance(o, (str, int, float, bool))]


def open_record(run_dir: Path) -> RunRecord:
    """A run directory's record, its summary read and checked, its tables read on first use
    (:func:`read_record` checks all). The config is summary.json's; .hydra/config.yaml only
    for a record without one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RecordError(f"{run_dir} is not a directory")
    summary = read_summary(run_dir)
    config = summary.get("config")
    return RunRecord(
        run_dir=run_dir,
        summary=summary,
        config=config if isinstance(config, dict) else _hydra_yaml(run_dir, "config.yaml", dict) or {},
        overrides=read_overrides(run_dir),
    )


def read_record(run_dir: Path) -> RunRecord:
    """Load a run directory, every table read and checked; raises RecordError (one line
    naming the bad file) when ``run_dir`` is not a readable run record."""
    record = open_record(run_dir)
    for name in TABLES:
        record.table(name)
    return record


# ------------------------------------------------------------------- tensor files
def _load_tensors(path: Path) -> Any:
    """torch.load with ``weights_only=True`` (a pickle that runs code is refused), any
    failure as one line naming the file."""
    import pickle

    import torch

    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise _bad(path, "is missing") from None
    except pickle.UnpicklingError as e:
        # weights_only refused it: name the first line of torch's long explanation only.
        first = next((line for line in str(e).splitlines() if "Unsupported" in line
                      or "global" in line.lower()), "")
        raise _bad(path, "is not a plain tensor file; refused to unpickle it"
                   + (f" ({first.strip()[:160]})" if first else "")) from None
    except Exception as e:  # noqa: BLE001 - whatever torch's reader trips on in a damaged file
        reason = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}"
        raise _bad(path, f"cannot be loaded (truncated or not written by torch.save: {reason})") from None


def _check_state_dict(path: Path, state: Any, shapes: dict[str, list[int]] | None):
    import torch

    if not isinstance(state, dict):
        raise _bad(path, f"holds a {_kind(state)}, not a state dict {{name: tensor}}")
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise _bad(path, f"entry {name!r} is a {_kind(tensor)}, not a named tensor")
    if shapes:
        if set(state) != set(shapes):
            missing, extra = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
            raise _bad(path, "its parameters do not match summary.json param_shapes ("
                       + "; ".join(filter(None, [missing and f"missing {', '.join(missing)}",
                                                 extra and f"unexpected {', '.join(extra)}"])) + ")")
        for name, shape in shapes.items():
            if list(state[name].shape) != list(shape):
                raise _bad(path, f"{name} has shape {list(state[name].shape)}; summary.json "
                           f"param_shapes says {shape}")
    return state


def read_checkpoint(run_dir: Path, name: str, param_shapes: dict | None = None) -> dict:
    """checkpoints/<name>.pt (init, best, last) as {param: tensor}, checked against
    ``param_shapes`` (default: summary.json's); RecordError in one line naming a missing,
    cut or foreign file (a pickle that is not plain tensors is refused, never run)."""
    path = Path(run_dir) / "checkpoints" / f"{name}.pt"
    if param_shapes is None:
        param_shapes = read_summary(run_dir).get("param_shapes")
    return _check_state_dict(path, _load_tensors(path), param_shapes)


def read_epoch_checkpoints(run_dir: Path, param_shapes: dict) -> dict[int, dict]:
    """checkpoints/epochs.pt: {epoch: state dict}, each checked as :func:`read_checkpoint` does."""
    path = Path(run_dir) / EPOCH_CHECKPOINTS
    states = _load_tensors(path)
    if not isinstance(states, dict):
        raise _bad(path, f"holds a {_kind(states)}, not {{epoch: state dict}}")
    for epoch, state in states.items():
        if not _is_int(epoch):
            raise _bad(path, f"key {epoch!r} is not an epoch number")
        _check_state_dict(path, state, param_shapes)
    return states


def read_data(run_dir: Path) -> dict:
    """data.pt: the tensors trained and evaluated on, {X_train, y_train, X_dev, ...}, each
    X an (N, features) float tensor and y the N labels beside it."""
    import torch

    path = Path(run_dir) / "data.pt"
    data = _load_tensors(path)
    if not isinstance(data, dict):
        raise _bad(path, f"holds a {_kind(data)}, not {{{', '.join(DATA_KEYS)}}}")
    missing = [k for k in DATA_KEYS if not isinstance(data.get(k), torch.Tensor)]
    if missing:
        raise _bad(path, f"has no tensor {', '.join(missing)}")
    for split in ("train", "dev", "test"):
        X, y = data[f"X_{split}"], data[f"y_{split}"]
        if X.dim() != 2 or y.dim() != 1 or len(X) != len(y):
            raise _bad(path, f"X_{split} {list(X.shape)} and y_{split} {list(y.shape)} are not "
                       "(N, features) and (N,)")
    return data


# ------------------------------------------------------------------------- status
def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22); None
    where it cannot be read. Beside a pid, it tells a reused pid from the process itself."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[19]) if len(fields) > 19 and fields[0] != "Z" else None


def process_identity() -> dict[str, Any]:
    """Who writes a record: what a reader checks (:func:`effective_status`) to tell a run
    whose process is gone (a kill -9, the OOM killer) from a running one."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": process_start(os.getpid())}


def _process_gone(summary: dict[str, Any]) -> bool:
    """The process that wrote a ``running`` record, on this host, no longer exists (or its
    pid now belongs to a process that started at another time). A process on another host,
    or without a pid, cannot be checked: not gone."""
    process = summary.get("process")
    if not isinstance(process, dict):
        return False
    pid, host, started = process.get("pid"), process.get("host"), process.get("started")
    if not _is_int(pid) or pid <= 0 or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        pass  # it exists (another user's process), or we cannot tell: its start time says
    now = process_start(pid)  # None: a zombie (exited, not reaped) or unreadable
    if now is None:
        return Path(f"/proc/{pid}").exists()
    return _is_int(started) and now != started


def effective_status(summary: dict[str, Any]) -> str:
    """The status to show: summary.json's, except :data:`STATUS_STOPPED` for a ``running``
    record whose process is gone (killed with SIGKILL, out of memory, a lost machine)."""
    status = str(summary.get("status", "unknown"))
    return STATUS_STOPPED if status == STATUS_RUNNING and _process_gone(summary) else status


def describe_status(summary: dict[str, Any]) -> str:
    """How the run stands, in words: "completed after 20 epochs", "stopped without a word at
    epoch 7 (process 123 on host is gone)", "running (epoch 7 so far)", ..."""
    status = effective_status(summary)
    epochs = summary.get("epochs_run") or 0
    n = f"{epochs} epoch{'' if epochs == 1 else 's'}"
    process = summary.get("process") if isinstance(summary.get("process"), dict) else {}
    who = f"process {process.get('pid')} on {process.get('host')}" if process else ""
    if status == STATUS_STOPPED:
        return (f"stopped without a word at epoch {epochs} ({who} is gone; its last epochs "
                "may be missing from the record)")
    if status == STATUS_RUNNING:
        if process and process.get("host") != socket.gethostname():
            return f"running on {process.get('host')} (epoch {epochs} so far; not checked from here)"
        return f"running (epoch {epochs} so far{'; ' + who if who else ''})"
    detail = summary.get("error") or summary.get("stop_reason") or ""
    if status == STATUS_INTERRUPTED:
        by = f" by {summary['signal']}" if summary.get("signal") else ""
        return f"interrupted{by} after {n}" + (f": {detail}" if summary.get("error") else "")
    if status == STATUS_FAILED:
        return f"failed after {n}" + (f": {detail}" if detail else "")
    return f"{status} after {n}" + (f" ({detail})" if detail else "")
