"""The comparison of jobs: a sweep's (at its root), or any runs' and sweeps' (``initlab
compare``): comparison.csv, the tables, the overlay figures (compare_figures) and the page.

Jobs are read from their folders, never from a launcher, so every launcher and every job
state (completed, diverged, failed, running, no record) compares alike. A seed sweep is
also summarised per remaining override combination: mean and spread across seeds
(seed_summary.csv, bands in the figures) and how often each finding occurs
(finding_rates.csv: "dead_units in 7 of 10 seeds"). :class:`SweepComparison` is the Hydra
callback that prints a big sweep's progress and renders the comparison when it ends.
"""

import atexit
import csv
import json
import math
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from initlab.group_record import GROUPS_DIR, GroupJob, has_group_records, read_groups
from initlab.papers import PAPERS, describe, expected_for, wilson_interval
from initlab.papers import measure as measure_quantity
from initlab.record import (
    FINISHED_STATUSES,
    PAGE,
    STATUS_INTERRUPTED,
    STATUS_STOPPED,
    SUMMARY,
    TENSORBOARD_DIR,
    RecordError,
    describe_status,
    effective_status,
    grad_norm_ends,
    layer_number,
    open_record,
    read_overrides,
    stored_grad_norm_ends,
)

MULTIRUN_FILE = "multirun.yaml"  # Hydra writes it at the root of every sweep
STATUS_NO_RECORD = "no record"  # a job directory without summary.json (killed as it started)
STATUS_NOT_STARTED = "not started"  # a job of multirun.yaml without a folder of its own
STATUS_UNREADABLE = "unreadable"  # a job whose record cannot be read (its error says why)
RAN_TO_THE_END = ("completed", "diverged")  # what statistics across seeds count
# Overrides that say how a sweep is run or shown, not what it tests: left out of labels.
NOT_EXPERIMENT_KEYS = ("report=", "report.", "overwrite=", "hydra.", "hydra/", "trainer.progress=")
DEFAULT_SUBDIR = "${hydra.job.num}"  # hydra.sweep.subdir: job i in <sweep>/<i>
SEED_KEY = "seed"
SPLITS = ("train", "dev", "test")
# Directories under a sweep root that are the comparison's (or an export's) output, not jobs.
NOT_JOB_DIRS = {"figures", "tables", TENSORBOARD_DIR, GROUPS_DIR}
# The files the comparison writes at a sweep's root, named here only: what replaces a sweep
# (overwrite=true) removes them all, and a comparison removes those it no longer writes.
COMPARISON_CSV, SEED_SUMMARY_CSV = "comparison.csv", "seed_summary.csv"
FINDING_RATES_CSV, PAPER_CSV = "finding_rates.csv", "paper.csv"
# What `initlab compare` compared, a path a line: `initlab report` of its folder does it again.
COMPARED_FILE = "compared.txt"
SWEEP_FILES = (COMPARISON_CSV, SEED_SUMMARY_CSV, FINDING_RATES_CSV, PAPER_CSV, PAGE, COMPARED_FILE)
# The per-job tables saved under tables/ show at most this many jobs; the terminal shows the
# comparison of at most TERMINAL_JOBS (a line of counts instead), the gradient norms and
# seed groups of at most TERMINAL_FEW; a sweep of more than TERMINAL_JOBS jobs shows a live
# progress line instead of a line per job.
TABLE_MAX_JOBS, TERMINAL_JOBS, TERMINAL_FEW = 100, 20, 8

COMPARISON_COLUMNS = (
    "job", "overrides", "label", "status", "error", "epochs_run", "best_epoch",
    "train_loss", "train_acc", "dev_loss", "dev_acc", "test_loss", "test_acc",
    "findings", "last_step",
)  # then first_grad_norm:<param> and last_grad_norm:<param> for every parameter
# Across the seeds of a group: the final (best-on-dev) metrics' mean, std, median and 5%
# and 95% quantiles; the last epoch's train and dev metrics; the slope of the step-0
# weight-gradient norms against depth; how often each finding occurred, with its 95%
# Wilson interval (finding_rates.csv has one row per group and finding).
SEED_STATS = ("mean", "std", "median", "q05", "q95")
LAST_EPOCH_SPLITS = ("train", "dev")  # metrics.csv has these per epoch; test only at the best
SEED_SUMMARY_COLUMNS = (
    "group", "overrides", "seeds", "finished",
    *(f"{split}_{key}_{stat}" for split in SPLITS for key in ("loss", "acc") for stat in SEED_STATS),
    *(f"last_{split}_{key}_{stat}" for split in LAST_EPOCH_SPLITS for key in ("loss", "acc")
      for stat in ("mean", "median")),
    "grad_slope_mean", "grad_slope_std",
    "findings",
)
FINDING_RATES_COLUMNS = ("group", "overrides", "code", "count", "seeds", "rate", "ci95_low",
                         "ci95_high")
PAPER_COLUMNS = ("paper", "group", "overrides", "quantity", "paper_says", "paper_value", "n",
                 "value", "ci95_low", "ci95_high", "verdict")


@dataclass
class Job:
    """One job of a sweep as read from its directory."""

    name: str  # its directory relative to the sweep root: "0", "1", ...
    job_dir: Path
    overrides: list[str]
    status: str
    error: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, list] = field(default_factory=dict)  # metrics.csv by column; {}: none
    grad_first: dict[str, float] = field(default_factory=dict)  # param -> norm at step 0
    grad_last: dict[str, float] = field(default_factory=dict)  # param -> norm at last step
    last_step: int | None = None
    findings: list[str] = field(default_factory=list)  # diagnosis codes, in order
    severities: dict[str, str] = field(default_factory=dict)  # code -> problem | warning
    label: str = ""  # the overrides that tell this job apart from the others

    def final(self, split: str, key: str) -> float:
        """Final (best-on-dev) loss or acc of ``split``; NaN when the job has none."""
        value = ((self.summary.get("metrics") or {}).get(split) or {}).get(key)
        return math.nan if value is None else float(value)

    def last(self, split: str, key: str) -> float:
        """The last recorded epoch's train or dev loss or acc; NaN when there is none."""
        column = self.metrics.get(f"{split}_{key}") or []
        return float(column[-1]) if column else math.nan

    def grad_slope(self) -> float:
        """Decades per layer of the step-0 weight-gradient norms (least-squares slope of log10
        norm on layer number; negative: they shrink toward the output); NaN under two norms."""
        points = [(layer_number(p.rsplit(".", 1)[0]), math.log10(v))
                  for p, v in self.grad_first.items()
                  if p.endswith(".weight") and isinstance(v, (int, float)) and v > 0
                  and math.isfinite(v)]
        return least_squares_slope(points)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES  # an interrupted job's: up to the stop


@dataclass
class Series:
    """What one line of a comparison figure stands for: one job, or the seeds of a group."""

    label: str
    jobs: list[Job]

    @property
    def finished_jobs(self) -> list[Job]:
        """The jobs this series shows: a lone job however far it got, a seed group's only those
        that ran their course (completed or diverged), so no half-trained job skews a mean."""
        if len(self.jobs) == 1:
            return [j for j in self.jobs if j.finished]
        return [j for j in self.jobs if j.status in RAN_TO_THE_END]

    @property
    def overrides(self) -> list[str]:
        """What the jobs of a seed group share: the first one's overrides but the seed."""
        return [o for o in self.jobs[0].overrides if o.partition("=")[0] != SEED_KEY]


# --------------------------------------------------------------------------- reading
def _natural_key(path: Path) -> tuple:
    # "10" after "9": job numbers sort as numbers.
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts)


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Every folder under ``sweep_dir`` that looks like a job (summary.json or .hydra/), in
    job order, whichever sweep left it (:func:`sweep_jobs` picks the sweep's own)."""
    sweep_dir = Path(sweep_dir)
    found = []
    for root, dirs, files in os.walk(sweep_dir):
        here = Path(root)
        if here != sweep_dir and (SUMMARY in files or ".hydra" in dirs):
            found.append(here)
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in NOT_JOB_DIRS]
    return sorted(found, key=lambda p: _natural_key(p.relative_to(sweep_dir)))


def planned_jobs(sweep_dir: Path) -> tuple[list[list[str]], bool] | None:
    """The overrides of every job the sweep launches, in order, as Hydra's basic sweeper
    expands multirun.yaml, and whether job ``i`` lives in ``<sweep>/<i>``; None when that
    cannot be known (no multirun.yaml, another sweeper, a value like ``glob(...)``)."""
    try:
        from omegaconf import OmegaConf

        from hydra_plugins.initlab_batched_launcher.sweeper import expand, expanding_sweeper

        # Unresolved: an interpolation in an override (`seed=${now:%s}`) is text here.
        hydra_cfg = OmegaConf.to_container(OmegaConf.load(Path(sweep_dir) / MULTIRUN_FILE),
                                           resolve=False)["hydra"]
        sweeper = hydra_cfg["sweeper"]
        if not expanding_sweeper(sweeper.get("_target_")):
            return None
        params = sweeper.get("params") or {}
        arguments = [f"{k}={v}" for k, v in params.items()] + list(hydra_cfg["overrides"]["task"])
        batch = expand(arguments)
        numbered = hydra_cfg["sweep"]["subdir"] == DEFAULT_SUBDIR
    except Exception:  # noqa: BLE001 - anything unexpected: walk the job folders instead
        return None
    return batch, numbered


@dataclass
class JobSlot:
    """Where one job of a sweep is: its folder, or None for a job never started."""

    name: str
    job_dir: Path | None
    overrides: list[str]
    note: str = ""  # why a folder found there is not this job's


def _same_job(found: list[str], planned: list[str]) -> bool:
    return found == planned or sorted(found) == sorted(planned)


_NO_PLAN_GIVEN = object()


def sweep_jobs(sweep_dir: Path, plan: Any = _NO_PLAN_GIVEN) -> list[JobSlot]:
    """The jobs multirun.yaml plans (:func:`planned_jobs`, or ``plan``), each in its folder
    or never started (a folder of an older sweep is none of them); without a plan, every
    job folder."""
    sweep_dir = Path(sweep_dir)
    plan = planned_jobs(sweep_dir) if plan is _NO_PLAN_GIVEN else plan
    if plan is None:
        return [JobSlot(str(d.relative_to(sweep_dir)), d, read_overrides(d))
                for d in find_job_dirs(sweep_dir)]
    planned, numbered = plan
    if numbered:
        # One listing, not a look per job (a sweep of 100,000 jobs in group records has
        # next to no folders).
        present = {e.name for e in os.scandir(sweep_dir) if e.is_dir()} if sweep_dir.is_dir() else set()
        folders = {i: sweep_dir / str(i) for i in range(len(planned)) if str(i) in present}
    else:  # a custom hydra.sweep.subdir: a job is the folder that holds its overrides
        folders, newest = {}, {}
        for d in find_job_dirs(sweep_dir):
            found = read_overrides(d)
            for i, overrides in enumerate(planned):
                if _same_job(found, overrides) and d.stat().st_mtime >= newest.get(i, -math.inf):
                    folders[i], newest[i] = d, d.stat().st_mtime
    slots = []
    for i, overrides in enumerate(planned):
        d = folders.get(i)
        if d is None or not d.is_dir():
            slots.append(JobSlot(str(i), None, overrides))
            continue
        name = str(d.relative_to(sweep_dir))
        found = read_overrides(d)
        if (d / ".hydra" / "overrides.yaml").is_file() and not _same_job(found, overrides):
            slots.append(JobSlot(name, None, overrides, note=(
                f"{d} holds a job of another sweep ({' '.join(found) or 'defaults'}), "
                "not this one's")))
            continue
        slots.append(JobSlot(name, d, overrides))
    return slots


def _job_error(summary: dict[str, Any], status: str) -> str:
    if status in (STATUS_STOPPED, STATUS_INTERRUPTED):
        return describe_status(summary)
    return str(summary.get("error") or summary.get("stop_reason") or "")


def read_job(job_dir: Path, sweep_dir: Path, overrides: list[str] | None = None) -> Job:
    """A job's record reduced to what the comparison shows; never raises for a bad job.
    ``overrides``: as its sweep planned them (default: its .hydra/overrides.yaml)."""
    name = str(job_dir.relative_to(sweep_dir))
    if overrides is None:
        overrides = read_overrides(job_dir)
    if not (job_dir / SUMMARY).exists():
        return Job(name, job_dir, overrides, STATUS_NO_RECORD,
                   error="no summary.json: the job never started or was killed")
    try:
        # Only the summary and metrics.csv: the gradient norms shown are in the summary
        # (written by the run; read from grad_norms.csv for a record without them).
        record = open_record(job_dir)
        metrics = record.columns("metrics")
        ends = stored_grad_norm_ends(record.summary) or grad_norm_ends(record)
    except RecordError as e:
        return Job(name, job_dir, overrides, STATUS_UNREADABLE, error=str(e))
    return _job(name, job_dir, overrides, record.summary, metrics, ends)


def _job(name: str, job_dir: Path, overrides: list[str], summary: dict[str, Any],
         metrics: dict[str, list], ends: dict[str, Any] | None) -> Job:
    """The Job of a record's summary (its gradient-norm ends' dicts shared, not copied)."""
    status = effective_status(summary)
    ends = ends or {"first": {}, "last": {}, "last_step": None}
    severities = {str(d.get("code")): str(d.get("severity") or "problem")
                  for d in summary.get("diagnosis") or [] if isinstance(d, dict)}
    return Job(name=name, job_dir=job_dir, overrides=overrides, status=status,
               error=_job_error(summary, status), summary=summary, metrics=metrics,
               grad_first=ends["first"], grad_last=ends["last"],
               last_step=ends["last_step"], findings=list(severities), severities=severities)


def group_record_job(entry: GroupJob, sweep_dir: Path) -> Job:
    """A job that keeps no folder, as its group's record holds it (its typed columns: the
    gradient-norm ends need no check)."""
    return _job(str(entry.job), sweep_dir / str(entry.job), entry.overrides, entry.summary,
                entry.metrics, entry.summary.get("grad_norms"))


def parse_overrides(overrides: list[str]) -> dict[str, str | None]:
    """``["act=relu", "+x=1"]`` -> ``{"act": "relu", "+x": "1"}`` (order kept)."""
    parsed: dict[str, str | None] = {}
    for o in overrides:
        key, sep, value = o.partition("=")
        parsed[key] = value if sep else None
    return parsed


def _join(parsed: dict[str, str | None], keys) -> str:
    return " ".join(k if parsed[k] is None else f"{k}={parsed[k]}" for k in keys if k in parsed)


def distinguishing_labels(override_lists: list[list[str]]) -> tuple[list[str], str]:
    """A label per list made of the overrides that differ between lists, and the overrides
    every list shares (for a title). A lone list is labelled by all its overrides."""
    # How the report is printed or where it goes is no part of the experiment.
    override_lists = [[o for o in lst if not o.lstrip("+~").startswith(NOT_EXPERIMENT_KEYS)]
                      for lst in override_lists]
    parsed = [parse_overrides(o) for o in override_lists]
    keys = list(dict.fromkeys(k for p in parsed for k in p))
    varying = [k for k in keys if len({p.get(k, "\0absent") for p in parsed}) > 1]
    common = [k for k in keys if k not in varying]
    shared = _join(parsed[0], common) if parsed else ""
    if len(parsed) == 1:
        return [shared or "defaults"], shared
    return [_join(p, varying) or "defaults" for p in parsed], shared


def read_sweep(sweep_dir: Path) -> tuple[list[Job], str]:
    """Every job of the sweep (:func:`sweep_jobs`: those never started too, none of an older
    sweep) with its label, and the overrides all jobs share."""
    sweep_dir = Path(sweep_dir)
    # Jobs without folders of their own (hydra.launcher.job_folders): their group's record.
    grouped = read_groups(sweep_dir, init_signal=_reads_init_signal(sweep_dir)) \
        if has_group_records(sweep_dir) else {}
    plan = planned_jobs(sweep_dir)
    slots = sweep_jobs(sweep_dir, plan)
    jobs = []
    for number, slot in enumerate(slots):
        entry = grouped.pop(number, None) if slot.job_dir is None and not slot.note else None
        if entry is not None and not _same_job(entry.overrides, slot.overrides):
            slot.note = (f"{entry.group_dir} holds a job {number} of another sweep "
                         f"({' '.join(entry.overrides) or 'defaults'}), not this one's")
            entry = None
        jobs.append(read_job(slot.job_dir, sweep_dir, slot.overrides) if slot.job_dir else
                    group_record_job(entry, sweep_dir) if entry is not None else
                    Job(slot.name, sweep_dir / slot.name, slot.overrides, STATUS_NOT_STARTED,
                        error=slot.note))
    if plan is None:  # no plan to place them by: every grouped job
        jobs += [group_record_job(entry, sweep_dir) for entry in grouped.values()]
    return jobs, _label(jobs)


def _reads_init_signal(sweep_dir: Path) -> bool:
    """Does the comparison show the jobs' init_signal: a paper's claims, or the phase map of
    a sweep that varies the init? A group record parses it only then (100,000 of them cost
    seconds and hundreds of MB)."""
    try:
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(OmegaConf.load(Path(sweep_dir) / MULTIRUN_FILE), resolve=False)
        hydra = cfg.get("hydra") or {}
        swept = [*(((hydra.get("sweeper") or {}).get("params") or {}).keys()),
                 *(key for key, _, value in (o.partition("=") for o in
                                             (hydra.get("overrides") or {}).get("task") or [])
                   if "," in value or value.startswith(("range(", "choice(", "interval(", "glob(")))]
    except Exception:  # noqa: BLE001 - no plan to tell by: read it
        return True
    # A swept experiment preset may bring a paper its multirun.yaml does not name.
    return bool(cfg.get("paper")) or any(k.lstrip("+~").split(".")[0] in ("init", "experiment", "paper")
                                         for k in swept)


def _label(jobs: list[Job]) -> str:
    """Label each job by what tells it apart; returns the overrides all jobs share."""
    labels, shared = distinguishing_labels([j.overrides for j in jobs])
    for job, label in zip(jobs, labels, strict=True):
        job.label = label
    return shared


def seed_groups(jobs: list[Job]) -> list[Series] | None:
    """Jobs grouped by every override but the seed, when the sweep varied the seed and some
    combination ran with more than one seed; else None."""
    if len({parse_overrides(j.overrides).get(SEED_KEY) for j in jobs} - {None}) < 2:
        return None
    groups: dict[tuple[str, ...], list[Job]] = {}
    for job in jobs:
        key = tuple(o for o in job.overrides if o.partition("=")[0] != SEED_KEY)
        groups.setdefault(key, []).append(job)
    if all(len(members) == 1 for members in groups.values()):
        return None
    labels, _ = distinguishing_labels([list(k) for k in groups])
    if len(groups) == 1:
        labels = ["all jobs"]
    from initlab.report.tables import plural

    return [Series(f"{label} ({plural(len(members), 'seed')})", members)
            for label, members in zip(labels, groups.values(), strict=True)]


# --------------------------------------------------------------------------- numbers
def _finite(values) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std of the finite values (std 0 for one value; NaN for none)."""
    import numpy as np

    v = _finite(values)
    return (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0) if v else (math.nan,) * 2


def quantile(values: list[float], q: float) -> float:
    """The q-quantile of the finite values (numpy's linear "type 7"); NaN for none."""
    import numpy as np

    v = _finite(values)
    return float(np.quantile(v, q)) if v else math.nan


def seed_stats(values: list[float]) -> list[float]:
    """[mean, std, median, q05, q95] of the finite values (SEED_STATS)."""
    return [*mean_std(values), *(quantile(values, q) for q in (0.5, 0.05, 0.95))]


def least_squares_slope(points: list[tuple[float, float]]) -> float:
    """The least-squares slope through (x, y) points, in closed form (a sweep asks it of
    each of 100,000 jobs: numpy's polyfit costs ~50 us a call); NaN with fewer than two
    distinct x."""
    if len({x for x, _ in points}) < 2:
        return math.nan
    n = len(points)
    mean_x = math.fsum(x for x, _ in points) / n
    mean_y = math.fsum(y for _, y in points) / n
    return (math.fsum((x - mean_x) * (y - mean_y) for x, y in points)
            / math.fsum((x - mean_x) ** 2 for x, _ in points))


def finding_frequencies(series: Series) -> list[tuple[str, int]]:
    """(code, number of seeds it occurred in), most frequent first."""
    counts = Counter(code for job in series.jobs for code in job.findings)
    return counts.most_common()


def describe_findings(series: Series) -> str:
    """One line per finding: "dead_units in 7 of 10 seeds (40%-89%)", the rate's 95% Wilson
    interval in brackets."""
    from initlab.report.tables import plural

    n = plural(len(series.jobs), "seed")
    lines = []
    for code, k in finding_frequencies(series):
        low, high = wilson_interval(k, len(series.jobs))
        lines.append(f"{code} in {k} of {n} ({low:.0%}-{high:.0%})")
    return "\n".join(lines)


def param_columns(jobs: list[Job]) -> list[str]:
    """Every parameter of any job, in depth order (fc2 before fc10), weight before bias."""
    params = {p for j in jobs for p in j.grad_first}
    return sorted(params, key=lambda p: (layer_number(p.rsplit(".", 1)[0]), p))


# --------------------------------------------------------------------------- outputs
def write_csv(path: Path, header, rows) -> Path:
    """``rows`` under ``header``; a NaN is an empty cell."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        # v != v: NaN alone is unequal to itself (a test per cell: comparison.csv of 100,000 jobs).
        writer.writerows(["" if v != v else v for v in row] for row in rows)
    return path


def write_comparison_csv(jobs: list[Job], path: Path) -> Path:
    params = param_columns(jobs)
    nans = [math.nan] * len(params)  # a parameter a job lacks
    return write_csv(path, [*COMPARISON_COLUMNS, *(f"first_grad_norm:{p}" for p in params),
                            *(f"last_grad_norm:{p}" for p in params)], (
        [j.name, " ".join(j.overrides), j.label, j.status, j.error,
         j.summary.get("epochs_run", ""), j.summary.get("best_epoch", ""),
         *(j.final(split, key) for split in SPLITS for key in ("loss", "acc")),
         " ".join(j.findings), "" if j.last_step is None else j.last_step,
         *map(j.grad_first.get, params, nans), *map(j.grad_last.get, params, nans)]
        for j in jobs))


def _seed_row(i: int, g: Series) -> list:
    done = g.finished_jobs
    stats = [s for split in SPLITS for key in ("loss", "acc")
             for s in seed_stats([j.final(split, key) for j in done])]
    for split in LAST_EPOCH_SPLITS:
        for key in ("loss", "acc"):
            last = [j.last(split, key) for j in done]
            stats += [mean_std(last)[0], quantile(last, 0.5)]
    findings = "; ".join(f"{c}:{k}/{len(g.jobs)}" for c, k in finding_frequencies(g))
    return [i, " ".join(g.overrides), len(g.jobs), len(done), *stats,
            *mean_std([j.grad_slope() for j in done]), findings]


def write_seed_csvs(groups: list[Series], folder: Path) -> list[Path]:
    """seed_summary.csv, and finding_rates.csv: a row per group and finding, with how many
    seeds had it, the rate and its 95% Wilson CI."""
    return [write_csv(folder / SEED_SUMMARY_CSV, SEED_SUMMARY_COLUMNS,
                      (_seed_row(i, g) for i, g in enumerate(groups))),
            write_csv(folder / FINDING_RATES_CSV, FINDING_RATES_COLUMNS, (
                [i, " ".join(g.overrides), code, k, len(g.jobs), k / len(g.jobs),
                 *wilson_interval(k, len(g.jobs))]
                for i, g in enumerate(groups) for code, k in finding_frequencies(g)))]


STATUS_STYLE = {"completed": "green", "diverged": "yellow", "running": "cyan"}


def wide_table(title: str):
    """A table without vertical rules, for many columns on 80 (through ``Fitted``)."""
    from rich import box
    from rich.table import Table

    return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0),
                 pad_edge=False)


def _status_cell(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'bold red')}]{status}[/]"


def decisive_gradients(job: Job) -> str:
    """The step-0 gradients a textbook comparison turns on: the parameters that alone got
    one (dead ReLU: "only fc5.bias"), else first over last weight-gradient norm
    (vanishing gradients: "fc1/fc5 9.0e-11")."""
    from initlab.report.tables import fmt

    first = {p: v for p, v in job.grad_first.items() if isinstance(v, (int, float))}
    if not first:
        return "–"
    nonzero = [p for p, v in first.items() if v != 0]
    if len(nonzero) < len(first) and len(nonzero) <= 2:
        return "only " + " ".join(nonzero) if nonzero else "all 0"
    weights = sorted((p for p in first if p.endswith(".weight")),
                     key=lambda p: layer_number(p.rsplit(".", 1)[0]))
    if len(weights) < 2 or first[weights[-1]] == 0:
        return "–"
    a, b = (w.rsplit(".", 1)[0] for w in (weights[0], weights[-1]))
    return f"{a}/{b} {fmt(first[weights[0]] / first[weights[-1]], 2)}"


SEVERITY_STYLE = {"problem": "bold red", "warning": "yellow"}


def _findings_cell(job: Job):
    from rich.text import Text

    text = Text()
    for k, code in enumerate(job.findings):
        text.append(("\n" if k else "") + code,
                    SEVERITY_STYLE.get(job.severities.get(code, "problem"), "bold red"))
    return text if job.findings else "–"


def comparison_table(jobs: list[Job], title: str):
    """One row per job; the train and dev losses are in comparison.csv, to stay narrow."""
    from initlab.report.tables import Fitted, Folded, fmt

    table = wide_table(title)
    # Overrides break only between overrides (or at "," and "="); nothing else breaks.
    table.add_column("job", no_wrap=True)
    table.add_column("overrides")
    table.add_column("status")
    # Two-line headers: one-word lines keep the number columns as narrow as their numbers.
    for split in SPLITS:
        table.add_column(f"{split}\nacc", justify="right")
    table.add_column("test\nloss", justify="right")
    table.add_column("best\nepoch", justify="right")
    # The step-0 gradients the textbook's comparisons are read from (the norms by layer
    # are in the gradient table below and comparison.csv).
    table.add_column("step-0\ngradients")
    # One code per line, whole, red for a problem, yellow for a warning; an ellipsis only
    # on terminals too narrow for the table.
    table.add_column("findings", overflow="ellipsis")
    for j in jobs:
        accs = [j.final(s, "acc") for s in SPLITS]
        table.add_row(
            j.name, Folded(j.label), _status_cell(j.status),
            *("–" if math.isnan(a) else f"{a:.3f}" for a in accs),
            fmt(j.final("test", "loss")),
            str(j.summary.get("best_epoch", "–")),
            Folded(decisive_gradients(j)),
            _findings_cell(j),
        )
    # On a narrow terminal these go first (comparison.csv has every column).
    # At 60 columns even the test accuracy goes: the codes stay whole.
    return Fitted(table, optional=("train\nacc", "dev\nacc", "best\nepoch", "test\nloss",
                                   "step-0\ngradients", "test\nacc"))


def grad_norm_table(jobs: list[Job], note: str = ""):
    """Weight-gradient norm per layer (columns) and job (rows): first step, then last."""
    from initlab.report.tables import Fitted, Folded, fmt

    weights = [p for p in param_columns(jobs) if p.endswith("weight")]
    several_steps = any((j.last_step or 0) > 0 for j in jobs)
    title = "Weight-gradient L2 norm by layer" + (
        " (first step, then → last step)" if several_steps else " (first step)") + (
        f"; {note}" if note else "")
    table = wide_table(title)
    table.add_column("job", no_wrap=True)
    table.add_column("overrides")
    for p in weights:
        table.add_column(p.rsplit(".", 1)[0], justify="right")
    for j in jobs:
        if not j.grad_first:
            continue
        cells = []
        for p in weights:
            cell = fmt(j.grad_first.get(p, math.nan), 3)
            if several_steps and p in j.grad_last:
                cell += f"\n→ {fmt(j.grad_last[p], 3)}"
            cells.append(cell)
        table.add_row(j.name, Folded(j.label), *cells)
    # On a narrow terminal the middle layers go first: the first and last layers' norms
    # are the ones a vanishing or exploding gradient is read from.
    layers = [p.rsplit(".", 1)[0] for p in weights]
    inner = list(enumerate(layers))[1:-1]
    middle = [name for i, name in sorted(inner, key=lambda x: -min(x[0], len(layers) - 1 - x[0]))]
    return Fitted(table, optional=tuple(middle))


def seed_table(groups: list[Series]):
    from initlab.report.tables import Fitted, Folded, OneOf

    table = wide_table("Across seeds: mean ± std of the final (best-on-dev) metrics of the "
                       "jobs that ran to the end (completed or diverged)")
    table.add_column("overrides")
    table.add_column("finished", justify="right")
    # Train metrics are in seed_summary.csv. "0.912 ± 0.010" puts its "± 0.010" on a line
    # of its own, and a finding its count, when the terminal is narrow.
    for col in ("dev acc", "test acc", "test loss"):
        table.add_column(col, justify="right")
    table.add_column("findings", overflow="ellipsis")
    for g in groups:
        cells = []
        for split, key in (("dev", "acc"), ("test", "acc"), ("test", "loss")):
            m, s = mean_std([j.final(split, key) for j in g.finished_jobs])
            cells.append("–" if math.isnan(m) else OneOf(f"{m:.3f} ± {s:.3f}", f"{m:.3f}\n± {s:.3f}"))
        findings = describe_findings(g) or "–"
        table.add_row(Folded(g.label), f"{len(g.finished_jobs)} of {len(g.jobs)}", *cells,
                      OneOf(findings, findings.replace(" in ", "\n  in ").replace(" (", "\n  (")))
    return Fitted(table, optional=("dev acc", "test loss"))  # seed_summary.csv has them all


def read_runs(paths: list[Path]) -> tuple[list[Job], str]:
    """The runs, and the jobs of the sweeps, at ``paths`` as the jobs of one comparison:
    named by their folders, labelled by what tells them apart (``-cn NAME`` included)."""
    jobs = []
    for path in map(Path, paths):
        if (path / SUMMARY).exists():
            jobs.append(read_job(path, path.parent))
        elif (path / MULTIRUN_FILE).exists():
            for job in read_sweep(path)[0]:
                job.name = f"{path.name}/{job.name}"
                jobs.append(job)
        else:
            raise RecordError(f"{path} is neither a run (no {SUMMARY}) nor a sweep "
                              f"(no {MULTIRUN_FILE})" + ("" if path.exists() else ": it does not exist"))
    if len({j.name for j in jobs}) < len(jobs):  # folders of one name: their whole paths
        for job in jobs:
            job.name = str(job.job_dir)
    for job in jobs:
        if (name := config_name(job.job_dir)) not in ("", "config"):
            job.overrides = [f"-cn {name}", *job.overrides]
    return jobs, _label(jobs)


def config_name(folder: Path) -> str:
    """The primary config (``-cn``) a run or sweep was made with: Hydra's ``job.config_name``
    in .hydra/hydra.yaml or multirun.yaml (one line found, no YAML parsed); "" if unknown."""
    for file in (folder / ".hydra" / "hydra.yaml", folder / MULTIRUN_FILE):
        try:
            found = re.search(r"^\s*config_name:\s*(\S+)\s*$", file.read_text(), re.MULTILINE)
        except OSError:
            continue
        return found[1] if found and found[1] != "null" else ""
    return ""


def default_compare_folder() -> Path:
    """Where `initlab compare` writes without --out: a new folder per second, as runs get."""
    return Path("outputs/compare", time.strftime("%Y-%m-%d/%H-%M-%S"))


def render_sweep(sweep_dir: Path, console=None, fmt: str = "png", dpi: int = 120,
                 runs: list[Path] | None = None, say_where: bool = False) -> list[Path]:
    """Write, print and draw the comparison of the sweep at ``sweep_dir`` (or of ``runs``,
    into ``sweep_dir``: ``initlab compare``); returns the files written. RecordError when
    there is no job."""
    from rich.console import Console

    from initlab.report.tables import print_and_save

    sweep_dir = Path(sweep_dir)
    if runs is not None:
        for marker in (SUMMARY, MULTIRUN_FILE):  # a comparison never goes into a record
            if (sweep_dir / marker).exists():
                raise RecordError(f"{sweep_dir} holds a {'run' if marker == SUMMARY else 'sweep'} "
                                  "record; write the comparison to another folder (--out)")
        runs = list(dict.fromkeys(Path(r).resolve() for r in runs))  # each once
        jobs, shared = read_runs(runs)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / COMPARED_FILE).write_text("".join(f"{Path(r).resolve()}\n" for r in runs))
    elif not sweep_dir.is_dir():
        raise RecordError(f"{sweep_dir} is not a directory")
    else:
        jobs, shared = read_sweep(sweep_dir)
    console = console or Console()
    if not jobs:
        raise RecordError(f"{sweep_dir} has no job directories (nothing ran yet?)")
    groups = seed_groups(jobs)
    series = groups or [Series(j.label, [j]) for j in jobs]
    from initlab.report import COMPARISON_FIGURES

    for name in COMPARISON_FIGURES:  # an earlier comparison's figure this one may not draw
        for stale in (sweep_dir / "figures").glob(f"{name}.*"):
            stale.unlink()
    figures = _FiguresAside(series, shared, sweep_dir / "figures", fmt, dpi)
    from initlab.report.tables import plural

    # A table of 10,000 rows is read by nobody and costs seconds to lay out: past
    # TABLE_MAX_JOBS the per-job tables show the first jobs; comparison.csv has every one.
    shown = jobs[:TABLE_MAX_JOBS]
    first = f"the first {len(shown)} of {len(jobs)} jobs; every job is in comparison.csv"
    kind = "Sweep comparison" if runs is None else "Comparison"
    title = (f"{kind} ({plural(len(jobs), 'job')}{'; all: ' + shared if shared else ''}"
             + (f"; {first}" if len(shown) < len(jobs) else "") + ")")
    tables = {"comparison": comparison_table(shown, title)}
    if any(j.grad_first for j in shown):
        tables["comparison_grad_norms"] = grad_norm_table(shown, first if len(shown) < len(jobs) else "")
    if groups:
        tables["seed_summary"] = seed_table(groups)
    few = len(jobs) <= TERMINAL_JOBS
    print_and_save(tables, console, sweep_dir / "tables", shown=(
        ["comparison"] * few + ["comparison_grad_norms"] * (len(jobs) <= TERMINAL_FEW)
        + ["seed_summary"] * (len(groups or ()) <= TERMINAL_FEW)))
    if not few:
        console.print(counts_line(jobs).replace("; ", "\n") + f"\nevery table: {sweep_dir / 'tables'}",
                      highlight=False, markup=False)
    unfinished = [j for j in jobs if j.status not in FINISHED_STATUSES and j.error]
    for j in unfinished[:5]:
        from rich.markup import escape  # an override like `x=[a,b]` is no markup tag

        console.print(f"[bold red]job {escape(j.name)}[/] "
                      f"{escape(f'({j.label}) {j.status}: {j.error}')}", highlight=False)
    if len(unfinished) > 5:
        console.print(f"and {len(unfinished) - 5} more jobs that did not finish (the page lists them)")
    written = [write_comparison_csv(jobs, sweep_dir / COMPARISON_CSV)]
    if groups:
        written += write_seed_csvs(groups, sweep_dir)
    paper = _paper_of(jobs)
    for stale in ((SEED_SUMMARY_CSV, FINDING_RATES_CSV) if not groups else ()) + \
            ((PAPER_CSV,) if paper is None else ()):
        (sweep_dir / stale).unlink(missing_ok=True)  # from an earlier comparison of this folder
    if paper is None:
        (sweep_dir / "tables" / "paper.txt").unlink(missing_ok=True)
    if paper is not None:
        table, path, verdicts = paper_table(paper, series, sweep_dir / PAPER_CSV)
        few_groups = len(series) <= TERMINAL_FEW
        print_and_save({"paper": table}, console, sweep_dir / "tables", shown=["paper"] * few_groups)
        if not few_groups:  # a grid of claims: counted here, every row in the table's file
            counted = ", ".join(f"{n} {v if n == 1 else v.removesuffix('s')}"
                                for v, n in Counter(v for v in verdicts if v).most_common())
            console.print(f"{paper.citation}: {plural(len(series), 'group')}, {counted or 'no verdict'}"
                          f"; the claim per group: {sweep_dir / 'tables' / 'paper.txt'}",
                          highlight=False, markup=False)
        written.append(path)
        tables = {"paper": table, **tables}  # the sweep page shows the claim table first
    from initlab.report import print_page_path
    from initlab.report.page import sweep_page, write_job_pages

    # The jobs the table shows get their own page (a job of a sweep leaves it to this step),
    # written while the forked copies draw the figures (~0.4 s for 100 pages); past
    # TABLE_MAX_JOBS a job's page is one `initlab report JOB` away.
    job_pages = write_job_pages(shown, sweep_dir / PAGE) if runs is None else {
        j.name: j.job_dir / PAGE for j in shown if (j.job_dir / PAGE).exists()}  # their own pages
    written += figures.result()
    console.print(f"[bold]{kind}:[/bold] {sweep_dir}  "
                  f"({plural(len(jobs), 'job')}, "
                  f"{plural(sum(p.parent.name == 'figures' for p in written), 'figure')})")
    page = sweep_page(sweep_dir, jobs, shown, tables, job_pages, kind=kind.split()[0].lower())
    written += [page, *(job_pages.values() if runs is None else ())]
    if say_where:  # a quiet sweep's one line: where it went
        print(f"Sweep: {sweep_dir} ({counts_line(jobs).split(';')[0]}); page: {page.resolve().as_uri()}")
    print_page_path(console, page)
    return written


def counts_line(jobs: list[Job]) -> str:
    """A sweep in one line: how its jobs ended, the range of their test accuracy and how
    often each finding occurred."""
    from initlab.report.tables import plural

    counts = Counter(j.status for j in jobs).most_common()
    line = f"{plural(len(jobs), 'job')}: " + ", ".join(f"{n} {s}" for s, n in counts)
    accs = sorted(a for j in jobs if math.isfinite(a := j.final("test", "acc")))
    if accs:
        line += f"; test acc {accs[0]:.3f}–{quantile(accs, 0.5):.3f}–{accs[-1]:.3f} (min–median–max)"
    found = Counter(code for j in jobs for code in j.findings).most_common()
    return line + ("; findings: " + ", ".join(f"{c} in {n}" for c, n in found) if found else "")


def _paper_of(jobs: list[Job]):
    """The paper a preset's sweep reproduces (its config's ``paper``), or None."""
    for j in jobs:
        name = (j.summary.get("config") or {}).get("paper")
        if name:
            return PAPERS.get(name)
    return None


def paper_table(paper, series: list[Series], path: Path):
    """The paper's claim beside initlab's measurement, per group of seeds and quantity:
    the table to print, paper.csv (written to ``path``) and each group's verdict."""
    from initlab.report.tables import Fitted, Folded

    table = wide_table(f"{paper.citation.rstrip('.')}.\nThe paper: {paper.claim}")
    for col in ("group", "quantity", "the paper", "initlab (95% CI)", "verdict"):
        table.add_column(col)
    rows, verdicts = [], []
    for i, g in enumerate(series):
        summaries = [j.summary for j in g.finished_jobs]
        expected = expected_for(paper, g.overrides, summaries)
        for q in paper.quantities:
            m = measure_quantity(q, summaries)
            first = expected is not None and q is paper.quantities[0]
            says, verdict = (expected.says, expected.verdict(m)) if first else ("", "")
            verdicts += [verdict] if first else []
            table.add_row(Folded(g.label), q.name, says, describe(m, q.rate), verdict)
            rows.append([paper.name, i, " ".join(g.overrides), q.name, says,
                         "" if expected is None or expected.value is None or q is not paper.quantities[0]
                         else expected.value, m.get("n", 0), m.get("value", ""), m.get("low", ""),
                         m.get("high", ""), verdict])
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PAPER_COLUMNS)
        writer.writerows(rows)
    return Fitted(table), path, verdicts


class _FiguresAside:
    """The comparison figures, drawn by two forked copies of this process (FIGURE_PARTS)
    while this one prints the tables: ~1.3 s of a 200-job sweep's ~2 s comparison on 2 cores.
    Without fork, or when a copy fails, they are drawn here (a drawing error is raised here)."""

    def __init__(self, series: list, shared: str, out_dir: Path, fmt: str, dpi: int):
        from initlab.report import FIGURE_PARTS

        self.args = (series, shared, out_dir, fmt, dpi)
        self.parts = [(names, *self._fork(names)) for names in FIGURE_PARTS]

    def _fork(self, names: tuple[str, ...]) -> tuple[int | None, int | None]:
        if not sys.platform.startswith("linux"):
            return None, None
        try:
            read_end, write_end = os.pipe()
            pid = os.fork()
        except OSError:
            return None, None
        if pid == 0:  # the copy: draw, send the paths, and leave at once
            os.close(read_end)
            code = 1
            try:
                paths = self._draw(names)
                os.write(write_end, "\n".join(map(str, paths)).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        return pid, read_end

    def _draw(self, names: tuple[str, ...]) -> list[Path]:
        from initlab.report.compare_figures import render_comparison_figures

        return render_comparison_figures(*self.args, names=names)

    def result(self) -> list[Path]:
        from initlab.report import COMPARISON_FIGURES

        written = [p for part in self.parts for p in self._collect(*part)]
        order = {name: i for i, name in enumerate(COMPARISON_FIGURES)}
        return sorted(written, key=lambda p: order.get(p.stem, len(order)))

    def _collect(self, names, pid, read_end) -> list[Path]:
        if pid is None:
            return self._draw(names)
        chunks = []
        while chunk := os.read(read_end, 1 << 16):
            chunks.append(chunk)
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            return self._draw(names)  # the same error, if any, now where it can be reported
        text = b"".join(chunks).decode()
        return [Path(line) for line in text.split("\n")] if text else []


# ---------------------------------------------------------------------- the callback
class SweepComparison(Callback):
    """Hydra callback: a big sweep's progress line, then the comparison when it ends.

    Hydra 1.3 calls ``on_multirun_end`` only when every job succeeded, so an exit hook renders
    it otherwise (the sweep still exits non-zero). Launchers pickle callbacks into their
    workers: only plain attributes live here."""

    def __init__(self, fmt: str = "png", dpi: int = 120) -> None:
        self.fmt = fmt
        self.dpi = dpi
        self._sweep_dir: str | None = None
        self._pending = False
        self._quiet = False
        self._pid: int | None = None
        self._progress: _JobProgress | bool | None = None  # False: a line per job instead

    def on_multirun_start(self, config, **kwargs) -> None:
        self._sweep_dir = str(config.hydra.sweep.dir)
        report = config.get("report") or {}
        self.fmt = report.get("format", self.fmt)
        self.dpi = report.get("dpi", self.dpi)
        self._quiet = bool(report.get("quiet", False))
        self._pending = bool(report.get("sweep", True))
        if not self._quiet:
            print(f"Sweep: {self._sweep_dir}", flush=True)
        self._pid = os.getpid()  # a launcher's worker process has a copy of this callback
        atexit.register(self._render_once)

    def on_job_start(self, config, **kwargs) -> None:
        if self._progress is None and os.getpid() == self._pid and not self._quiet:
            plan = planned_jobs(Path(self._sweep_dir))  # Hydra's sweeper wrote multirun.yaml
            total = len(plan[0]) if plan else 0
            from omegaconf import OmegaConf

            # The batched launcher draws a bar per chunk instead (its jobs end together).
            batched = "batched" in str(OmegaConf.select(config, "hydra.launcher._target_") or "")
            self._progress = _JobProgress(total) if total > TERMINAL_JOBS and not batched else False
            import initlab.report

            initlab.report.LIVE_SWEEP_PROGRESS = bool(self._progress)

    def on_job_end(self, config, job_return=None, **kwargs) -> None:
        if self._progress and os.getpid() == self._pid:
            summary = Path(str(config.hydra.runtime.output_dir)) / SUMMARY
            try:
                status = effective_status(json.loads(summary.read_text()))
            except (OSError, ValueError):
                status = "failed"
            self._progress.job_done(status)

    def on_multirun_end(self, config, **kwargs) -> None:
        self._render_once()

    def _render_once(self) -> None:
        import initlab.report

        initlab.report.LIVE_SWEEP_PROGRESS = False  # a notebook's next sweep starts afresh
        if not self._pending or self._sweep_dir is None:
            return
        self._pending = False
        if self._progress:
            self._progress.close()
        sweep = Path(self._sweep_dir)
        if not sweep.is_dir() or not ((sweep / MULTIRUN_FILE).exists() or find_job_dirs(sweep)):
            return  # refused before any job: nothing to compare
        try:
            from rich.console import Console

            render_sweep(Path(self._sweep_dir), console=Console(quiet=self._quiet),
                         fmt=self.fmt, dpi=self.dpi, say_where=self._quiet)
        except RecordError as e:
            print(f"initlab: no sweep comparison: {e}", file=sys.stderr)
        except Exception as e:  # a reporting bug must not hide how the sweep itself went
            print(f"initlab: the sweep comparison failed: {type(e).__name__}: {e} "
                  f"(retry with `initlab report {self._sweep_dir}`)", file=sys.stderr)


class _JobProgress:
    """A big sweep's live line: jobs done by status, time spent, time left at the pace so
    far; redrawn in place on a terminal, else a line every tenth of the jobs."""

    def __init__(self, total: int) -> None:
        self.total, self.counts, self.started, self.tenths = total, Counter(), time.monotonic(), 0
        self.tty, self.open = sys.stdout.isatty(), False

    def job_done(self, status: str) -> None:
        self.counts[status] += 1
        done = sum(self.counts.values())
        spent = time.monotonic() - self.started
        left = spent / done * max(self.total - done, 0)
        line = (f"jobs {done}/{self.total}: " + ", ".join(f"{n} {s}" for s, n in self.counts.most_common())
                + f"; {_clock(spent)} spent, ETA {_clock(left)}")
        if self.tty:
            print("\r" + line[:79].ljust(79), end="", flush=True)
            self.open = True
        elif done * 10 // self.total > self.tenths or done == self.total:
            self.tenths = done * 10 // self.total
            print(line, flush=True)

    def close(self) -> None:
        if self.open:
            print(flush=True)
            self.open = False


def _clock(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"
