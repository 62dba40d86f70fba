"""A batched group's record when its jobs keep no folder of their own (``hydra.launcher.
job_folders``): one columnar record per group, streamed as the group trains, validated on
read. Its layout is a contract (pandas, polars and DuckDB read it as it is)::

    <sweep>/groups/<g>/group.json          the group (<g>: its first job's number), parameters, format
    <sweep>/groups/<g>/jobs/*.parquet      one row per job and state: ``running`` when the
                                           job starts, then its final row; the last wins
    <sweep>/groups/<g>/metrics/*.parquet   one row per job per epoch (metrics.csv's columns)
    <sweep>/groups/<g>/grad_norms/*.parquet  one row per job, log step and parameter
    <sweep>/groups/<g>/errors/<job>.txt    the traceback of a job whose record failed

A jobs row holds the job's number, overrides, status, seed, final metrics, findings and
their severities, the gradient norm of every parameter at step 0 and at the last step
(``first_grad_norm:<param>``, ``last_grad_norm:<param>``), and as JSON text its config (its
seed null: the column has it), its init_signal, the rest of its summary.json and its
``.hydra/`` files: enough to write the job's folder on demand (:mod:`initlab.materialize`).
A comparison reads the columns and parses no JSON but what it shows (the init_signal for a
paper's claims or a phase map; each distinct config once). The log steps are step 0 and
the last step of each log epoch (trainer.log_every).

Why Parquet through pyarrow: columnar and compressed (the near-identical JSON of 100,000
jobs shrinks ~50x under zstd), typed, and read directly by pandas
(``pd.read_parquet("<sweep>/groups/1/jobs")``), polars and DuckDB
(``select * from '<sweep>/groups/*/jobs/*.parquet'``). Each write is a new part file, written
under a temporary name and renamed: a killed group keeps every part written before the
kill (at most FLUSH_EVERY_S seconds lost), and a reader never sees half a file.
"""

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from initlab.record import COLUMNS, FINISHED_STATUSES, STATUS_RUNNING, FloatRow, LazyJSON, RecordError

GROUPS_DIR = "groups"
GROUP_FILE = "group.json"
TABLES = ("jobs", "metrics", "grad_norms")
FORMAT = 1
# A writer writes its buffered rows at most this often (and at the end): what a kill loses.
FLUSH_EVERY_S = 5.0
SPLITS = ("train", "dev", "test")
# The jobs table's fixed columns (then first_grad_norm:<param> and last_grad_norm:<param>).
METRIC_KEYS = tuple(f"{s}_{k}" for s in SPLITS for k in ("loss", "acc"))
# The columns a comparison reads (then the gradient-norm columns).
FLAT_COLUMNS = ("job", "writer", "overrides", "status", "error", "seed", "epochs_run", "best_epoch",
                "stop_reason", "signal", *METRIC_KEYS, "findings", "severities", "last_step",
                "paper")
JSON_COLUMNS = ("config", "init_signal", "summary", "hydra_files")
# `writer`: the writer's part-name prefix. A job trained twice (a task requeued after its
# time limit) has rows of two writers: a reader keeps those of the writer of its last row.
METRIC_COLUMNS = ("job", "writer", *COLUMNS["metrics.csv"])
GRAD_NORM_COLUMNS = ("job", "writer", *COLUMNS["grad_norms.csv"])


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as e:  # a dependency of initlab: only a broken install lacks it
        raise RecordError(f"group records need pyarrow ({e}); pip install 'pyarrow>=14'") from None
    return pyarrow


def _schemas(params: list[str]) -> dict[str, Any]:
    pa = _pyarrow()
    text, num, whole, texts = pa.string(), pa.float64(), pa.int64(), pa.list_(pa.string())
    jobs = [("job", whole), ("writer", text), ("overrides", texts), ("status", text), ("error", text),
            ("seed", whole), ("epochs_run", whole), ("best_epoch", whole), ("stop_reason", text),
            ("signal", text), *((k, num) for k in METRIC_KEYS),
            ("findings", texts), ("severities", texts), ("last_step", whole), ("paper", text),
            *((c, text) for c in JSON_COLUMNS),
            *((f"first_grad_norm:{p}", num) for p in params),
            *((f"last_grad_norm:{p}", num) for p in params)]
    metrics = [("job", whole), ("writer", text), ("epoch", whole),
               *((c, num) for c in COLUMNS["metrics.csv"][1:])]
    grads = [("job", whole), ("writer", text), ("step", whole), ("epoch", whole), ("param", text),
             ("norm", num)]
    return {"jobs": pa.schema(jobs), "metrics": pa.schema(metrics), "grad_norms": pa.schema(grads)}


def group_dir(sweep_dir: Path, number: int) -> Path:
    return Path(sweep_dir) / GROUPS_DIR / str(number)


def write_group_file(path: Path, number: int, params: list[str], jobs: int) -> None:
    """``group.json``, before the group's first row: what a reader checks the parts against."""
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (GROUP_FILE + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "group": number, "params": params, "jobs": jobs},
                              indent=2) + "\n")
    os.replace(tmp, path / GROUP_FILE)


@dataclass(frozen=True)
class GroupSlot:
    """Where a member of a stack writes when its job keeps no folder: its group's record,
    as job number ``job``, with the ``.hydra/`` files its folder would have held."""

    group_dir: Path
    job: int
    # {path in its folder: text}, or a function giving them (rendered where the record starts)
    hydra_files: "dict[str, str] | Callable[[], dict[str, str]]" = field(
        default_factory=dict, compare=False, hash=False)

    def files(self) -> dict[str, str]:
        return self.hydra_files() if callable(self.hydra_files) else self.hydra_files

    @property
    def run_dir(self) -> Path:
        """The folder the job would have had (and gets on demand): <sweep>/<job>."""
        return self.group_dir.parent.parent / str(self.job)


class GroupRecordWriter:
    """The rows of the members one process trains, buffered and written as part files
    (``part-<start time>-<first job>-<n>.parquet``: one writer per process and chunk, so parts
    never clash, and a later writer's parts sort, and win, after an earlier one's)."""

    def __init__(self, group_dir: Path, first_job: int, params: list[str],
                 flush_every_s: float = FLUSH_EVERY_S):
        self.group_dir, self.params = Path(group_dir), list(params)
        # When it started: a later writer of the same jobs (a task trained again after its
        # time limit, the rows that say a failed chunk failed) sorts after, and wins.
        self.prefix = f"part-{time.time_ns():016x}-{first_job:09d}"
        self.parts = 0
        self.schemas = _schemas(self.params)
        self.jobs: dict[int, dict[str, Any]] = {}  # buffered: the last row of each job
        self.metrics: dict[str, list] = {c: [] for c in METRIC_COLUMNS}
        self.grad_norms: dict[str, list] = {c: [] for c in GRAD_NORM_COLUMNS}
        self.last_flush = time.monotonic()
        self.flush_every_s = flush_every_s

    # ------------------------------------------------------------------ rows
    def job_row(self, job: int, summary: dict[str, Any], overrides: list[str] | None,
                hydra_files: dict[str, str] | None = None) -> None:
        row = job_row(job, summary, overrides, self.params, hydra_files)
        earlier = self.jobs.get(job)
        if hydra_files is None and earlier is not None:  # its running row, not flushed yet
            row["hydra_files"] = earlier["hydra_files"]
        row["writer"] = self.prefix
        self.jobs[job] = row

    def metric_rows(self, job: int, rows: list[tuple]) -> None:
        columns = list(self.metrics.values())
        for row in rows:
            columns[0].append(job)
            columns[1].append(self.prefix)
            for column, value in zip(columns[2:], row):
                column.append(value)

    def grad_norm_rows(self, job: int, steps: list[int], epochs: list[int], norms: list[list[float]]) -> None:
        """Every parameter's norm at each of ``steps`` (the caller picks the log steps)."""
        g = self.grad_norms
        for step, epoch, row in zip(steps, epochs, norms):
            for param, norm in zip(self.params, row):
                g["job"].append(job)
                g["writer"].append(self.prefix)
                g["step"].append(step)
                g["epoch"].append(epoch)
                g["param"].append(param)
                g["norm"].append(norm)

    # ------------------------------------------------------------------ parts
    def flush_due(self) -> bool:
        return time.monotonic() - self.last_flush >= self.flush_every_s

    def flush(self) -> None:
        """Every buffered row into new part files; metrics and gradient norms first, so a
        job's final row is never on disk before its rows."""
        pa = _pyarrow()
        self.last_flush = time.monotonic()
        tables = {"metrics": self.metrics, "grad_norms": self.grad_norms}
        for name, columns in tables.items():
            if columns["job"]:
                self._write(name, pa.Table.from_pydict(columns, schema=self.schemas[name]))
                for column in columns.values():
                    column.clear()
        if self.jobs:
            rows = list(self.jobs.values())
            columns = {name: [row.get(name) for row in rows] for name in self.schemas["jobs"].names}
            self._write("jobs", pa.Table.from_pydict(columns, schema=self.schemas["jobs"]))
            self.jobs.clear()

    def _write(self, table_name: str, table: Any) -> None:
        import pyarrow.parquet as pq

        folder = self.group_dir / table_name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.prefix}-{self.parts:06d}.parquet"
        self.parts += 1
        tmp = path.with_name(path.name + ".tmp")
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def save_error(self, job: int, text: str) -> Path:
        path = self.group_dir / "errors" / f"{job}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def job_row(job: int, summary: dict[str, Any], overrides: list[str] | None, params: list[str],
            hydra_files: dict[str, str] | None = None) -> dict[str, Any]:
    """A jobs-table row of a summary as summary.json holds it."""
    metrics = summary.get("metrics") or {}
    ends = summary.get("grad_norms") or {}
    first, last = ends.get("first") or {}, ends.get("last") or {}
    config = summary.get("config")
    # Their own columns; null here keeps each key's place in summary.json's order.
    rest = {k: None if k in ("config", "init_signal") else v for k, v in summary.items()}
    diagnosis = summary.get("diagnosis") or []
    row = {
        "job": job, "overrides": list(overrides or []), "status": summary.get("status"),
        "error": summary.get("error"), "seed": summary.get("seed"),
        "epochs_run": summary.get("epochs_run"), "best_epoch": summary.get("best_epoch"),
        "stop_reason": summary.get("stop_reason"), "signal": summary.get("signal"),
        "findings": [str(f.get("code")) for f in diagnosis],
        "severities": [str(f.get("severity") or "problem") for f in diagnosis],
        "last_step": ends.get("last_step"),
        "paper": config.get("paper") if isinstance(config, dict) else None,
        # The seed nulled: the jobs of a seed sweep share one config text (read once).
        "config": json.dumps({**config, "seed": None} if isinstance(config, dict) and "seed" in config
                             else config),
        "init_signal": json.dumps(summary["init_signal"]) if "init_signal" in summary else None,
        "summary": json.dumps(rest),
        "hydra_files": json.dumps(hydra_files) if hydra_files else None,
    }
    for split in SPLITS:
        for key in ("loss", "acc"):
            row[f"{split}_{key}"] = (metrics.get(split) or {}).get(key)
    for p in params:
        row[f"first_grad_norm:{p}"] = first.get(p)
        row[f"last_grad_norm:{p}"] = last.get(p)
    return row


# --------------------------------------------------------------------------- reading
@dataclass
class GroupJob:
    """One job as its group's record holds it: ``summary`` has what a comparison shows
    (status, metrics, findings, gradient-norm ends, its config, its init_signal when read);
    :func:`read_job_summary` has the whole summary.json."""

    job: int
    group_dir: Path
    overrides: list[str]
    summary: dict[str, Any]
    metrics: dict[str, list]  # metrics.csv by column ({}: no epoch yet)

    @property
    def status(self) -> str:
        return str(self.summary.get("status"))


def has_group_records(sweep_dir: Path) -> bool:
    return (Path(sweep_dir) / GROUPS_DIR).is_dir()


def _parts(folder: Path) -> list[Path]:
    # Part names sort by their writer's start, then by write: later rows last.
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def _read_table(folder: Path, columns: Iterable[str], prefix: str = "", job: int | None = None
                ) -> dict[str, list]:
    """The parts of one table, concatenated by column: ``columns`` and those named
    ``prefix``... (``job``: that job's rows only)."""
    pa = _pyarrow()
    import pyarrow.parquet as pq

    columns, tables = list(columns), []
    for path in _parts(folder):
        try:
            table = pq.read_table(path, filters=None if job is None else [("job", "=", job)])
        except (OSError, pa.ArrowException) as e:
            raise RecordError(f"{path} is not a readable Parquet file ({str(e).splitlines()[0]}); "
                              "remove it to read the rest of the group") from None
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise RecordError(f"{path} lacks the column(s) {', '.join(missing)}: not a "
                              "group record part of this initlab")
        extra = [c for c in table.column_names if prefix and c.startswith(prefix)]
        tables.append(table.select(columns + extra))
    if not tables:
        return {c: [] for c in columns}
    try:
        whole = pa.concat_tables(tables, promote_options="default")
    except pa.ArrowException as e:
        raise RecordError(f"{folder}: its parts do not share one schema ({str(e).splitlines()[0]}): "
                          "not all parts of one group record") from None
    return {c: whole.column(c).to_pylist() for c in whole.column_names}


def read_group(path: Path, init_signal: bool = True) -> dict[int, GroupJob]:
    """Every job of one group's record, checked: rows well formed, each finished job's
    metrics rows one per epoch it ran (fewer: a cut record; more: rows of another run).
    ``init_signal``: parse each job's (a paper's claims and the phase map read it)."""
    path = Path(path)
    try:
        meta = json.loads((path / GROUP_FILE).read_text())
    except (OSError, ValueError) as e:
        raise RecordError(f"{path / GROUP_FILE} cannot be read ({e}): not a group record") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RecordError(f"{path / GROUP_FILE} is not a group record of format {FORMAT}")
    wanted = [*FLAT_COLUMNS, "config", *(("init_signal",) if init_signal else ())]
    rows = _read_table(path / "jobs", wanted, prefix="first_grad_norm:")
    rows.update(_read_table(path / "jobs", [], prefix="last_grad_norm:"))
    # Each parameter's name and position once for all the group's jobs.
    firsts = [c for c in rows if c.startswith("first_grad_norm:")]
    lasts = [c for c in rows if c.startswith("last_grad_norm:")]
    first_index = {c.partition(":")[2]: k for k, c in enumerate(firsts)}
    last_index = {c.partition(":")[2]: k for k, c in enumerate(lasts)}
    configs: dict[str, Any] = {}  # each distinct config text parsed once
    jobs: dict[int, GroupJob] = {}
    running: list[int] = []
    for k, job in enumerate(rows["job"]):
        try:
            text = rows["config"][k]
            if text not in configs:
                configs[text] = json.loads(text)
                if not isinstance(configs[text], dict):
                    raise ValueError("not an object")
            signal = rows["init_signal"][k] if init_signal else None
            if signal is not None and not signal.startswith("{"):
                raise ValueError("init_signal not an object")
            summary = {c: rows[c][k] for c in ("status", "error", "seed", "epochs_run",
                                                "best_epoch", "stop_reason", "signal")}
            summary["config"] = configs[text]
            if signal is not None:
                summary["init_signal"] = LazyJSON(signal)
        except (TypeError, ValueError):
            raise RecordError(f"{path / 'jobs'}: job {job}'s config is not JSON") from None
        summary["metrics"] = {s: {"loss": rows[f"{s}_loss"][k], "acc": rows[f"{s}_acc"][k]}
                              for s in SPLITS if rows[f"{s}_loss"][k] is not None}
        summary["diagnosis"] = [{"code": c, "severity": v} for c, v in
                                zip(rows["findings"][k] or [], rows["severities"][k] or [])]
        if rows["last_step"][k] is not None:
            summary["grad_norms"] = {
                "first": FloatRow(first_index, [rows[c][k] for c in firsts]),
                "last": FloatRow(last_index, [rows[c][k] for c in lasts]),
                "last_step": rows["last_step"][k]}
        if summary["status"] == STATUS_RUNNING:
            running.append(job)
        jobs[job] = GroupJob(job, path, list(rows["overrides"][k] or []), summary, {})
    writers = {job: rows["writer"][k] for k, job in enumerate(rows["job"])}  # of its last row
    if any(jobs[job].status == STATUS_RUNNING for job in running):
        # Who writes it: a reader shows it stopped once that process is gone.
        more = _read_table(path / "jobs", ["job", "summary"])
        for job, text in zip(more["job"], more["summary"]):
            if jobs[job].status == STATUS_RUNNING:
                try:
                    jobs[job].summary["process"] = json.loads(text).get("process")
                except (TypeError, ValueError, AttributeError):
                    raise RecordError(f"{path / 'jobs'}: job {job}'s summary is not a JSON object") from None
    metrics = _read_table(path / "metrics", METRIC_COLUMNS)
    names = COLUMNS["metrics.csv"]
    for k, job in enumerate(metrics["job"]):
        entry = jobs.get(job)
        if entry is None or metrics["writer"][k] != writers[job]:
            continue  # a job whose first row was lost with a kill, or rows of an earlier try
        if not entry.metrics:
            entry.metrics = {c: [] for c in names}
        for c in names:
            entry.metrics[c].append(metrics[c][k])
    for entry in jobs.values():
        _check(entry, path)
    return jobs


def read_job_summary(sweep_dir: Path, job: int) -> tuple[Path, list[str], dict[str, Any]] | None:
    """Job ``job`` of the sweep's group records: (its group, its overrides, its whole
    summary.json as its last row has it, with the ``.hydra/`` files of its first row under
    ``"hydra_files"``); None when no group holds it."""
    root = Path(sweep_dir) / GROUPS_DIR
    found = None
    for folder in sorted(root.iterdir(), key=lambda p: (p.stat().st_mtime, p.name)) if root.is_dir() else ():
        rows = _read_table(folder / "jobs", ["job", "overrides", *JSON_COLUMNS], job=job)
        files: dict[str, str] = {}
        for k in range(len(rows["job"])):
            try:
                summary = json.loads(rows["summary"][k])
                summary["config"] = json.loads(rows["config"][k])
                if isinstance(summary["config"], dict) and "seed" in summary["config"]:
                    summary["config"]["seed"] = summary.get("seed")
                if rows["init_signal"][k] is not None:
                    summary["init_signal"] = json.loads(rows["init_signal"][k])
                else:
                    summary.pop("init_signal", None)
                files = json.loads(rows["hydra_files"][k]) if rows["hydra_files"][k] else files
            except (TypeError, ValueError):
                raise RecordError(f"{folder / 'jobs'}: job {job}'s summary is not JSON") from None
            summary["hydra_files"] = files
            found = (folder, list(rows["overrides"][k] or []), summary)
    return found


def job_numbers(sweep_dir: Path) -> list[int]:
    """The job numbers the sweep's group records hold, in order."""
    root = Path(sweep_dir) / GROUPS_DIR
    numbers: set[int] = set()
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.is_dir():
            numbers.update(_read_table(folder / "jobs", ["job"])["job"])
    return sorted(numbers)


def _check(entry: GroupJob, path: Path) -> None:
    epochs = entry.metrics.get("epoch", [])
    expected = entry.summary.get("epochs_run")
    if epochs != list(range(1, len(epochs) + 1)):
        raise RecordError(f"{path}: job {entry.job}'s metrics rows are not epochs 1, 2, ... in "
                          "order (rows of another run?)")
    if entry.status in FINISHED_STATUSES and isinstance(expected, int) and len(epochs) != expected:
        raise RecordError(f"{path}: job {entry.job} has {len(epochs)} metrics rows where its "
                          f"summary says {expected} epochs: "
                          + ("cut short" if len(epochs) < expected else "rows of another run"))
    if entry.status == STATUS_RUNNING:
        # Its progress is what it streamed (a running row is written once, at the start).
        entry.summary["epochs_run"] = len(epochs)


def read_groups(sweep_dir: Path, init_signal: bool = True) -> dict[int, GroupJob]:
    """Every job in the sweep's group records, by job number (a job in two groups: the
    group written last wins, as a folder written last would)."""
    root = Path(sweep_dir) / GROUPS_DIR
    jobs: dict[int, GroupJob] = {}
    folders = sorted((p for p in root.iterdir() if p.is_dir()),
                     key=lambda p: (p.stat().st_mtime, p.name)) if root.is_dir() else []
    for folder in folders:
        jobs.update(read_group(folder, init_signal))
    return jobs


def grad_norm_rows(group_path: Path, job: int) -> list[tuple]:
    """One job's gradient-norm rows at log steps: (step, epoch, param, norm)."""
    jobs = _read_table(Path(group_path) / "jobs", ["job", "writer"], job=job)
    rows = _read_table(Path(group_path) / "grad_norms", GRAD_NORM_COLUMNS, job=job)
    last = jobs["writer"][-1] if jobs["writer"] else None
    table = zip(*(rows[c] for c in COLUMNS["grad_norms.csv"]))
    return [row for row, writer in zip(table, rows["writer"]) if writer == last]
