"""Overview of a folder of runs and sweeps (``initlab report outputs/``, ``initlab list``).

One row per run or sweep found under the folder, newest first: when it started, its
overrides, its status and its key metrics. Only summary.json files and Hydra's small
YAML files are read, so listing a large ``outputs/`` stays quick.

Each path is shown whole, on one line, as it pastes into ``initlab report`` from where
the listing was asked for: a table when the terminal is wide enough for the longest path,
else one block per entry with the path on a line of its own.
"""

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console, ConsoleOptions, RenderResult
from rich.padding import Padding
from rich.text import Text

from initlab.record import SUMMARY
from initlab.report.compare import MULTIRUN_FILE, NOT_JOB_DIRS, find_job_dirs
from initlab.report.tables import Fitted, Folded, OneOf, plural

# Run-directory parts that never hold another run: not worth walking into.
NOT_RECORD_DIRS = NOT_JOB_DIRS | {"checkpoints"}


@dataclass
class Entry:
    """One run or sweep of the overview."""

    kind: str  # "run" or "sweep"
    path: Path
    started: float  # POSIX time
    overrides: str
    status: str
    epochs: str
    test_acc: str


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _started(run_or_sweep: Path, *candidates: str) -> float:
    # Hydra writes these files when a run or sweep starts; the first that exists dates it.
    for name in candidates:
        path = run_or_sweep / name
        if path.exists():
            return path.stat().st_mtime
    return run_or_sweep.stat().st_mtime


def _yaml_list(path: Path) -> list[str]:
    if not path.exists():
        return []
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(path)]


def _acc(summary: dict) -> float:
    value = summary.get("metrics", {}).get("test", {}).get("acc")
    return math.nan if value is None else float(value)


def run_entry(run_dir: Path) -> Entry:
    summary = _read_json(run_dir / SUMMARY)
    acc = _acc(summary)
    return Entry(
        kind="run",
        path=run_dir,
        started=_started(run_dir, ".hydra/hydra.yaml", SUMMARY),
        overrides=" ".join(_yaml_list(run_dir / ".hydra" / "overrides.yaml")) or "defaults",
        status=str(summary.get("status", "unknown")),
        epochs=str(summary.get("epochs_run", "–")),
        test_acc="–" if math.isnan(acc) else f"{acc:.3f}",
    )


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
    for job_dir in find_job_dirs(sweep_dir):
        summary = _read_json(job_dir / SUMMARY)
        status = str(summary.get("status", "no record"))
        statuses[status] = statuses.get(status, 0) + 1
        if math.isfinite(_acc(summary)):
            accs.append(_acc(summary))
    n = sum(statuses.values())
    return Entry(
        kind="sweep",
        path=sweep_dir,
        started=_started(sweep_dir, MULTIRUN_FILE),
        overrides=overrides or "defaults",
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
        if MULTIRUN_FILE in files:
            entries.append(sweep_entry(here))
            dirs[:] = []
        elif SUMMARY in files:
            entries.append(run_entry(here))
            dirs[:] = []
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in NOT_RECORD_DIRS)
    return sorted(entries, key=lambda e: e.started, reverse=True)


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

    def _status(self, e: Entry) -> str:
        from initlab.report.compare import _status_cell

        return _status_cell(e.status) if e.kind == "run" else e.status

    def table(self):
        from initlab.report.compare import wide_table

        table = wide_table(self.title)
        table.add_column("started")
        table.add_column("path", no_wrap=True)  # whole, to paste into `initlab report`
        table.add_column("overrides", min_width=MIN_OVERRIDES_WIDTH)
        table.add_column("status")
        table.add_column("epochs", justify="right")
        table.add_column("test acc", justify="right", no_wrap=True)
        for e in self.entries:
            when, status = _when(e), self._status(e)
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
