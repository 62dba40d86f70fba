"""``initlab list``: a row per run or sweep under a folder, newest first (started, label,
status, key metrics), from summary.json and Hydra's small files only. Each path is whole
on one line, as it pastes into ``initlab report``: a table when the longest path fits,
else a block per entry."""

import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console, ConsoleOptions, RenderResult
from rich.padding import Padding
from rich.text import Text

from initlab.record import (
    SUMMARY,
    RecordError,
    effective_status,
    read_overrides,
    read_summary,
    where_why,
)
from initlab.report.compare import (
    COMPARED_FILE,
    MULTIRUN_FILE,
    NOT_JOB_DIRS,
    STATUS_NO_RECORD,
    STATUS_NOT_STARTED,
    STATUS_UNREADABLE,
    _status_cell,
    config_name,
    sweep_jobs,
    wide_table,
)
from initlab.report.tables import Fitted, Folded, OneOf, plural

# Run-directory parts that never hold another run: not worth walking into.
NOT_RECORD_DIRS = NOT_JOB_DIRS | {"checkpoints"}


@dataclass
class Entry:
    """One run or sweep of the overview."""

    kind: str  # "run", "sweep" or "comparison" (a folder `initlab compare` wrote)
    path: Path
    started: float  # POSIX time
    overrides: str
    status: str
    epochs: str
    test_acc: str


def _started(run_or_sweep: Path, *candidates: str) -> float:
    # Hydra writes these files when a run or sweep starts; the first that exists dates it.
    for name in candidates:
        path = run_or_sweep / name
        if path.exists():
            return path.stat().st_mtime
    return run_or_sweep.stat().st_mtime


def _acc(summary: dict) -> float:
    value = ((summary.get("metrics") or {}).get("test") or {}).get("acc")
    return math.nan if value is None else float(value)


def _unreadable(e: RecordError, folder: Path) -> str:
    """"unreadable: summary.json: no status" -- the bad file named from the run's folder."""
    path, why = getattr(e, "path", None), getattr(e, "why", None)
    if path is None or why is None:
        return f"{STATUS_UNREADABLE}: {e}"
    try:
        where = path.relative_to(folder)
    except ValueError:
        where = path
    return f"{STATUS_UNREADABLE}: {where_why(where, why)}"


def _label(overrides: list[str] | str, folder: Path) -> str:
    """What a listing calls a run or sweep: its primary config when not the default one
    (``-cn smoke``), then its overrides; "defaults" when it has neither."""
    name = config_name(folder)
    words = [f"-cn {name}"] if name not in ("", "config") else []
    words += [overrides] if isinstance(overrides, str) else overrides
    return " ".join(w for w in words if w) or "defaults"


def run_entry(run_dir: Path) -> Entry:
    """One run's row from its summary.json (checked) and overrides; a bad summary gives
    the row ``unreadable: <file>: <why>``, never an error."""
    try:
        summary = read_summary(run_dir)
    except RecordError as e:
        summary, status = {}, _unreadable(e, run_dir)
    else:
        status = effective_status(summary)
    acc = _acc(summary)
    return Entry(
        kind="run",
        path=run_dir,
        started=_started(run_dir, ".hydra/hydra.yaml", SUMMARY),
        overrides=_label(read_overrides(run_dir), run_dir),
        status=status,
        epochs=str(summary.get("epochs_run", "–")),
        test_acc="–" if math.isnan(acc) else f"{acc:.3f}",
    )


def _job_status(slot) -> tuple[str, float]:
    """A sweep job's status (as the comparison shows it) and test accuracy, from its summary."""
    if slot.job_dir is None:
        return STATUS_NOT_STARTED, math.nan
    if not (slot.job_dir / SUMMARY).exists():
        return STATUS_NO_RECORD, math.nan
    try:
        summary = read_summary(slot.job_dir)
    except RecordError:
        return STATUS_UNREADABLE, math.nan
    return effective_status(summary), _acc(summary)


def sweep_entry(sweep_dir: Path) -> Entry:
    from omegaconf import OmegaConf

    overrides = ""
    try:
        hydra_cfg = OmegaConf.load(sweep_dir / MULTIRUN_FILE).get("hydra", {})
        task = [str(o) for o in hydra_cfg.get("overrides", {}).get("task", [])]
        # A preset's own sweep (experiment=dead_relu) lives in the sweeper params.
        params = hydra_cfg.get("sweeper", {}).get("params") or {}
        task += [f"{k}={v}" for k, v in params.items() if not any(
            o.startswith(f"{k}=") for o in task)]
        overrides = " ".join(task)
    except Exception:  # an unreadable multirun.yaml still gets its row
        overrides = "?"
    statuses: dict[str, int] = {}
    accs = []
    for slot in sweep_jobs(sweep_dir):  # this sweep's jobs only, never started ones too
        status, acc = _job_status(slot)
        statuses[status] = statuses.get(status, 0) + 1
        if math.isfinite(acc):
            accs.append(acc)
    n = sum(statuses.values())
    return Entry(
        kind="sweep",
        path=sweep_dir,
        started=_started(sweep_dir, MULTIRUN_FILE),
        overrides=_label(overrides, sweep_dir) if overrides != "?" else "?",
        status=f"{plural(n, 'job')}: " + ", ".join(f"{k} {s}" for s, k in sorted(statuses.items())),
        epochs="–",
        test_acc="–" if not accs else (f"{min(accs):.3f}–{max(accs):.3f}"
                                       if f"{min(accs):.3f}" != f"{max(accs):.3f}"
                                       else f"{accs[0]:.3f}"),
    )


def find_entries(folder: Path) -> list[Entry]:
    """Every run and sweep under ``folder`` (a sweep's jobs are part of the sweep), newest first."""
    entries = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if MULTIRUN_FILE in files or SUMMARY in files:
            entries.append(_entry(here, "sweep" if MULTIRUN_FILE in files else "run"))
            dirs[:] = []
        elif COMPARED_FILE in files:
            entries.append(_entry(here, "comparison"))
            dirs[:] = []
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in NOT_RECORD_DIRS)
    return sorted(entries, key=lambda e: e.started, reverse=True)


def _entry(path: Path, kind: str) -> Entry:
    """The row of one run or sweep; one that cannot be read at all (a folder that vanished
    or cannot be opened) still gets its row, saying why, and the others are listed."""
    try:
        if kind == "comparison":
            compared = (path / COMPARED_FILE).read_text().split()
            return Entry(kind, path, _started(path, COMPARED_FILE),
                         "compare " + " ".join(Path(p).name for p in compared),
                         f"comparison of {plural(len(compared), 'run or sweep', 'runs and sweeps')}",
                         "–", "–")
        return run_entry(path) if kind == "run" else sweep_entry(path)
    except OSError as e:
        try:
            started = path.stat().st_mtime
        except OSError:
            started = 0.0
        return Entry(kind, path, started, "?", f"{STATUS_UNREADABLE}: {e.strerror or e}", "–", "–")


# The overrides column of the table layout is at least this wide; on a terminal too
# narrow for it beside the paths, the block layout reads better than a column of stubs.
MIN_OVERRIDES_WIDTH = 20
FACT_SEP = "   "  # between the facts of a block's second line, which wraps only there


class Overview:
    """The listing as a rich renderable that picks its layout for the width it gets."""

    def __init__(self, entries: list[Entry], folder: Path) -> None:
        self.entries = entries
        self.folder = folder
        self.title = f"Runs and sweeps under {folder} (newest first)"

    def table(self):
        table = wide_table(self.title)
        table.add_column("started")
        table.add_column("path", no_wrap=True)  # whole, to paste into `initlab report`
        table.add_column("overrides", min_width=MIN_OVERRIDES_WIDTH)
        table.add_column("status")
        table.add_column("epochs", justify="right")
        table.add_column("test acc", justify="right", no_wrap=True)
        for e in self.entries:
            when, status = _when(e), _status_cell(e.status) if e.kind == "run" else e.status
            # Narrow forms: the time under the date, a sweep's counts one per line.
            table.add_row(OneOf(when, when.replace(" ", "\n")), Text(str(e.path)), Folded(e.overrides),
                          OneOf(status, status.replace(": ", ":\n").replace(", ", "\n")),
                          e.epochs, e.test_acc)
        return table

    def blocks(self) -> RenderResult:
        """One block per entry: the path alone on its first line."""
        yield Text(self.title, style="italic", justify="center")
        for e in self.entries:
            yield Text(str(e.path), style="bold", no_wrap=True, overflow="ignore")
            facts = [_when(e), e.status]  # a sweep's status starts "3 jobs: "
            if e.epochs.isdigit():
                facts.append(plural(int(e.epochs), "epoch"))
            facts.append(f"test acc {e.test_acc}")
            yield Padding(Folded(FACT_SEP.join(facts), breaks=(FACT_SEP,)), (0, 0, 0, 2))
            yield Padding(Folded(e.overrides, style="dim"), (0, 0, 0, 2))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        layout = Fitted(self.table()).layout(console, options)
        if layout is not None:
            yield layout[0]
        else:
            yield from self.blocks()


def _when(e: Entry) -> str:
    return datetime.fromtimestamp(e.started).strftime("%Y-%m-%d %H:%M:%S")


def overview_table(entries: list[Entry], folder: Path) -> Overview:
    """The listing of ``entries`` (see :class:`Overview`); print it with ``console.print``."""
    return Overview(entries, folder)
