"""What ``hydra/launcher=batched`` does with a sweep's jobs.

1. Compose each job cheaply (:mod:`._compose`) and check it as a run would
   (``initlab.config.validate``, ``initlab.budget.check_budget``, the device); a job that
   fails is recorded ``failed`` in one line, as ``initlab.run.run_from_hydra`` records it.
2. Group the others by ``initlab.engine.group_key`` (and device), say how in one line,
   and split groups bigger than ``max_members`` into chunks.
3. Per chunk: write its jobs' folders and ``.hydra/`` files, train it as one stacked model
   (``initlab.engine.train_group``) under a progress bar, print one line per job.
   A job ``group_key`` cannot place (a custom component) is a stack of one.
4. SIGINT/SIGTERM: the chunk in training stops (the engine's own handler) and keeps its
   records; later chunks never get a folder; exit 128 + signal, as initlab does.

A sweep it cannot batch at all (another app's task, no engine) says why in one line and
runs as Hydra's basic launcher would.
"""

import copy
import dataclasses
import functools
import json
import os
import shutil
import signal
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

from hydra.core.utils import JobReturn, JobStatus, configure_log, env_override, run_job, setup_globals
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf, open_dict

from hydra_plugins.initlab_batched_launcher._compose import (
    PreparedJob,
    hydra_config,
    one_line,
    write_hydra_files,
)
from initlab.group_record import GROUPS_DIR
from initlab.record import STATUS_FAILED
from initlab.view import ConfigView, to_plain

PREFIX = "hydra/launcher=batched"


class LauncherError(Exception):
    """A setting of the launcher itself is wrong: the sweep stops in one line."""


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    reason = _cannot_batch(launcher)
    if reason:
        print(f"{PREFIX}: {reason}; running the jobs one at a time, as the basic launcher does",
              file=sys.stderr, flush=True)
        return _basic_launch(launcher, job_overrides, initial_job_idx)
    return BatchedSweep(launcher).run([list(o) for o in job_overrides], initial_job_idx)


def _cannot_batch(launcher: Any) -> Optional[str]:
    from initlab.cli import run_task
    from initlab.run import run_from_hydra

    if launcher.task_function not in (run_from_hydra, run_task):
        name = getattr(launcher.task_function, "__qualname__", launcher.task_function)
        return f"it trains initlab runs only, and this app's task is {name}"
    try:
        import initlab.engine  # noqa: F401
    except Exception as e:  # noqa: BLE001 - a missing or broken engine: say which, run anyway
        return f"the training engine (initlab.engine) cannot be imported: {one_line(str(e))}"
    return None


JOB_FOLDERS = ("auto", "always", "never")


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_settings(max_members: Any, device: Optional[str], threads: Any = None,
                   job_folders: Any = "auto", max_job_folders: Any = 0,
                   executor: Any = None, submitit_parameters: Any = None) -> tuple[Optional[str], int]:
    """The launcher's own settings, checked before the sweep starts; returns the device
    (cpu, cuda, ... as torch names it, or None: each job's trainer.device) and the CPU
    threads of the stacked model (null: one per core available to this process)."""
    if not _whole(max_members, 1):
        raise LauncherError(f"hydra.launcher.max_members must be a whole number >= 1 (got {max_members})")
    if job_folders not in JOB_FOLDERS:
        raise LauncherError(f"hydra.launcher.job_folders={job_folders} is not one of: "
                            f"{', '.join(JOB_FOLDERS)}")
    if not _whole(max_job_folders, 0):
        raise LauncherError("hydra.launcher.max_job_folders must be a whole number >= 0 "
                            f"(got {max_job_folders})")
    if executor is not None:
        from hydra_plugins.initlab_batched_launcher._tasks import EXECUTORS

        if executor not in EXECUTORS:
            raise LauncherError(f"hydra.launcher.executor={executor} is not one of: "
                                f"{', '.join(EXECUTORS)}, null (null: in this process)")
        if job_folders == "always":
            raise LauncherError("hydra.launcher.job_folders=always needs the launcher's own process; "
                                "a task of hydra.launcher.executor writes its group's record")
        try:
            import submitit
        except ImportError:
            raise LauncherError(f"hydra.launcher.executor={executor} needs submitit: "
                                "pip install 'initlab[launchers]'") from None
        try:  # its parameters, checked by submitit itself before anything is written
            with tempfile.TemporaryDirectory(prefix="initlab-submitit-check-") as scratch:
                submitit.AutoExecutor(folder=scratch, cluster=EXECUTORS[executor]).update_parameters(
                    **(submitit_parameters or {}))
        except Exception as e:  # noqa: BLE001 - a name or value submitit refuses, in its words
            raise LauncherError(f"hydra.launcher.submitit: {one_line(str(e))}") from None
        if device is not None and str(device) != "cpu":
            return str(device), 1  # a task's node has the GPU, not necessarily this one
    from initlab.budget import cores

    if threads is None:
        threads = cores()
    elif not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= cores():
        raise LauncherError(f"hydra.launcher.threads must be a whole number from 1 to the "
                            f"{cores()} CPU cores here, or null (one per core) (got {threads})")
    if device is None:
        return None, threads
    if str(device) not in ("cpu", "cuda", "auto") and not str(device).startswith("cuda:"):
        raise LauncherError(f"hydra.launcher.device={device} is not one of: cpu, cuda, auto, null "
                            "(null: each job's trainer.device)")
    import torch

    if device == "auto":
        return ("cuda" if torch.cuda.is_available() else "cpu"), threads
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise LauncherError(f"hydra.launcher.device={device} but no CUDA GPU is available here; use "
                            "hydra.launcher.device=cpu (or auto, or null for each job's trainer.device)")
    return str(device), threads


def _basic_launch(launcher: Any, job_overrides, initial_job_idx: int) -> list[JobReturn]:
    """Each job composed by Hydra and run in this process, as Hydra's basic launcher does."""
    returns = []
    for i, overrides in enumerate(job_overrides):
        idx = initial_job_idx + i
        sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config,
                                                                              list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = sweep_config.hydra.job.num = idx
        returns.append(run_job(hydra_context=launcher.hydra_context, task_function=launcher.task_function,
                               config=sweep_config, job_dir_key="hydra.sweep.dir",
                               job_subdir_key="hydra.sweep.subdir"))
        configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    return returns


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def grouping_line(n_jobs: int, sizes: list[int], chunks: int, max_members: int, failed: int,
                  alone: int, why_alone: tuple[str, ...] = (), by_memory: bool = False) -> str:
    """'24 jobs → 3 groups of 16, 4, 4' and what else the user should know about the split
    (``why_alone``: the reasons jobs train alone, each said once)."""
    if len(sizes) <= 8:
        shape = ", ".join(map(str, sizes))
    else:  # a thousand groups: by size, biggest first
        shape = ", ".join(f"{count} × {size}" for size, count in
                          sorted(Counter(sizes).items(), reverse=True))
    line = f"{_plural(n_jobs, 'job')} → {_plural(len(sizes), 'group')}" + (f" of {shape}" if sizes else "")
    if chunks > len(sizes):
        line += f", trained in {chunks} chunks " + (
            f"(down to {max_members} members: what fits in memory)" if by_memory
            else f"of at most {max_members} (hydra.launcher.max_members)")
    reasons = "; ".join(dict.fromkeys(why_alone)) or "no stacked form"
    notes = ([f"{alone} train{'s' if alone == 1 else ''} alone ({reasons})"] if alone else []) + (
        [f"{failed} failed {'its' if failed == 1 else 'their'} checks"] if failed else [])
    return line + ("; " + "; ".join(notes) if notes else "")


class BatchedSweep:
    """One call of the launcher: prepare, check, group, train, report."""

    def __init__(self, launcher: Any):
        self.launcher = launcher
        self.config = launcher.config
        self.callbacks = launcher.hydra_context.callbacks
        self.composer = launcher.composer
        self.quiet = bool(OmegaConf.select(self.config, "report.quiet", default=False))
        self.output_subdir = self.config.hydra.output_subdir
        self.returns: dict[int, JobReturn] = {}
        self.job_callbacks = _overrides_job_events(self.callbacks)
        self.in_flight: list[PreparedJob] = []  # the chunk in training, for an abort

    # ------------------------------------------------------------------ the sweep
    def run(self, job_overrides: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        from initlab.interrupts import Interrupted

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        jobs = [self.composer.prepare(initial_job_idx + i, o) for i, o in enumerate(job_overrides)]
        from initlab.budget import members_that_fit

        memory = self._check(jobs, sweep_dir)
        if self.launcher.executor is not None:
            # A task holds what its node gives it: submitit's mem_gb, not this machine's memory.
            mem_gb = self.launcher.submitit.get("mem_gb")
            memory = int(float(mem_gb) * 2**30) if isinstance(mem_gb, (int, float)) else None
        failed = [j for j in jobs if j.error is not None]
        alone = [j for j in jobs if j.error is None and j.alone]
        by_key: dict[Any, list[PreparedJob]] = {}  # in order of each group's first job
        for job in jobs:
            if job.error is None:
                by_key.setdefault(("alone", job.idx) if job.alone else job.key, []).append(job)
        groups = list(by_key.values())
        mode = self.launcher.job_folders
        self.folders = self.launcher.executor is None and (
            mode == "always" or (mode == "auto" and len(jobs) <= self.launcher.max_job_folders))
        # In a group record, each group is <sweep>/groups/<its first job's number> (its chunks
        # share it; unique across the batches of hydra.sweeper.max_batch_size).
        self.group_numbers = {j.idx: g[0].idx for g in groups for j in g}
        # A stack holds what memory allows (initlab.budget), at most max_members.
        cap = self.launcher.max_members
        fits = [members_that_fit(g[0].cfg, memory) for g in groups]
        limits = [min(cap, fit or len(g)) for fit, g in zip(fits, groups)]
        # Memory split a group where it holds fewer than both the cap and the group's jobs.
        by_memory = [fit for fit, g in zip(fits, groups) if fit and fit < min(cap, len(g))]
        chunks = [g[i:i + size] for g, size in zip(groups, limits) for i in range(0, len(g), size)]
        import initlab.report
        from initlab.report.compare import TERMINAL_JOBS

        # A big sweep prints no line per job: each chunk's progress bar (epochs, ETA) stands
        # for its jobs, and the comparison sums them up at the end.
        initlab.report.LIVE_SWEEP_PROGRESS = len(jobs) > TERMINAL_JOBS
        if not self.quiet:
            print(grouping_line(len(jobs), [len(g) for g in groups], len(chunks),
                                min(by_memory, default=cap), len(failed), len(alone),
                                tuple(j.alone for j in alone), bool(by_memory))
                  + ("" if self.folders or not groups else
                     f"; records: one per group in {sweep_dir / GROUPS_DIR}"), flush=True)
        if not self.folders:
            self._write_group_files(groups, sweep_dir)
        for job in failed:
            self._fail_job(job)
        if self.launcher.executor is not None:
            self._submit(chunks, sweep_dir)
            return [self.returns[j.idx] for j in jobs]
        try:
            for number, chunk in enumerate(chunks, 1):
                # A job with no group trains as a stack of one, through the same engine.
                self._train_chunk(chunk, chunk[0].device, number, len(chunks))
        except (Interrupted, KeyboardInterrupt) as e:
            self._abort(getattr(e, "signum", signal.SIGINT), sweep_dir)
        return [self.returns[j.idx] for j in jobs]

    def _submit(self, chunks: list[list[PreparedJob]], sweep_dir: Path) -> None:
        """Every chunk as a submitit task (:mod:`._tasks`); each job returns as its task ended."""
        from hydra_plugins.initlab_batched_launcher._tasks import ChunkSpec, submit
        from initlab.run import JobFailed

        specs = []
        for number, chunk in enumerate(chunks, 1):
            slots = [self._write(job) for job in chunk]
            slots = [dataclasses.replace(slot, hydra_files=slot.files()) for slot in slots]
            specs.append(ChunkSpec(number, [to_plain(j.cfg) for j in chunk], slots,
                                   [list(j.overrides) for j in chunk], chunk[0].device,
                                   int(self.launcher.submitit.get("cpus_per_task") or 1)))
        ends = submit(self.launcher.executor, dict(self.launcher.submitit), sweep_dir / ".submitit",
                      specs, self.quiet)
        for (_, summaries, why), chunk in zip(ends, chunks):
            for k, job in enumerate(chunk):
                summary = summaries[k] if summaries is not None else None
                if summary is not None and summary.get("status") != STATUS_FAILED:
                    self._return(job, JobStatus.COMPLETED, summary)
                else:
                    job.error = (summary or {}).get("error") or why
                    self._return(job, JobStatus.FAILED, JobFailed(job.error))

    def _check(self, jobs: list[PreparedJob], sweep_dir: Path) -> int | None:
        """What a single run checks before it trains; system figures read once per sweep
        (returns the memory available). Jobs that differ in their seed alone share one
        check (and group key) but for the seed's own range: a 100,000-seed sweep checks
        one config."""
        from initlab.budget import available_memory, free_disk
        from initlab.config import ConfigError, check_seed

        memory = available_memory()
        _, disk = free_disk(sweep_dir)
        checked: dict[tuple, tuple] = {}
        for job in jobs:
            if job.error is not None:
                continue
            try:
                check_seed(job.cfg.seed)
            except ConfigError as e:
                job.error = str(e)
                continue
            except Exception:  # noqa: BLE001 - no seed to read: the whole check says why
                pass
            same = (id(job.composition), tuple(o for o in job.overrides if not o.startswith("seed="))) \
                if isinstance(job.cfg, ConfigView) and job.composition is not None else None
            if same not in checked or same is None:
                self._check_job(job, memory, disk)
                if same is None:
                    continue
                checked[same] = (job.error, job.device, job.key, job.alone)
            job.error, job.device, job.key, job.alone = checked[same]
        return memory

    def _check_job(self, job: PreparedJob, memory: int | None, disk: int | None) -> None:
        from initlab import engine
        from initlab.budget import check_budget
        from initlab.config import ConfigError, validate
        from initlab.run import resolve_device

        forced = self.launcher.device  # checked in setup (check_settings)
        remote = self.launcher.executor is not None
        try:
            validate(job.cfg)
            # A task's node, not this one, has the memory and the device it trains with.
            check_budget(job.cfg, job.out_dir, memory=None if remote else memory, disk=disk)
            job.device = forced or (str(job.cfg.trainer.device) if remote else
                                    str(resolve_device(str(job.cfg.trainer.device))))
        except ConfigError as e:
            job.error = str(e)
            return
        except Exception as e:  # noqa: BLE001 - a bad value OmegaConf lets through
            job.error = one_line(f"{type(e).__name__}: {e}")
            return
        try:
            job.key = (job.device, engine.group_key(job.cfg))
        except Exception as e:  # noqa: BLE001 - no stacked form: it trains alone
            # group_key's own refusal (ValueError) says why in words; anything else
            # is named by its type.
            job.alone = one_line(str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}")

    def _write_group_files(self, groups: list[list[PreparedJob]], sweep_dir: Path) -> None:
        from initlab.group_record import group_dir, write_group_file
        from initlab.model import parameter_shapes

        for group in groups:
            cfg, n = group[0].cfg, self.group_numbers[group[0].idx]
            write_group_file(group_dir(sweep_dir, n), n,
                             list(parameter_shapes(cfg.model, cfg.data.dim)), len(group))

    # ------------------------------------------------------------------ one job's files
    def _write(self, job: PreparedJob) -> Any:
        """The job's folder with its .hydra/ files; in a group record, its GroupSlot
        (the files go into its first row). Returns where its record goes."""
        # A job that failed its checks keeps a folder (its error and .hydra/ files) in any mode.
        in_folder = self.folders or job.idx not in self.group_numbers
        if in_folder:
            write_hydra_files(job, self.composer.hydra_files(job), self.output_subdir)
        else:  # rendered where the member's record starts (a shard: in parallel), as now
            files = functools.partial(self._hydra_files, dataclasses.replace(
                job, cfg=job.cfg if isinstance(job.cfg, ConfigView) else copy.deepcopy(job.cfg)))
        # As run_from_hydra does in a sweep: one line per job, no per-run progress bar; the
        # record's config says so, as it does under the basic launcher.
        if job.cfg.report.tables in ("auto", "line"):
            if isinstance(job.cfg, ConfigView):
                job.cfg = job.cfg.updated("trainer.progress", False)
            else:
                job.cfg.trainer.progress = False
        if in_folder:
            return job.out_dir
        from initlab.group_record import GroupSlot, group_dir

        return GroupSlot(group_dir(Path(str(self.config.hydra.sweep.dir)),
                                   self.group_numbers[job.idx]), job.idx, files)

    def _hydra_files(self, job: PreparedJob) -> dict[str, str]:
        """The job's .hydra/ files by path in its folder (none with hydra.output_subdir=null)."""
        if self.output_subdir is None:
            return {}
        return {f"{self.output_subdir}/{name}": text
                for name, text in self.composer.hydra_files(job).items()}

    def _return(self, job: PreparedJob, status: JobStatus, value: Any) -> JobReturn:
        # A job in a group record: its config is there; 100,000 of them are not kept here.
        ret = JobReturn(overrides=job.overrides, cfg=job.cfg if self.folders else None,
                        hydra_cfg=None, working_dir=os.getcwd(), task_name=job.composition.job_name
                        if job.composition else None, status=status, _return_value=value)
        self.returns[job.idx] = ret
        if self.job_callbacks and job.composition is not None:
            self.callbacks.on_job_end(config=job.full_config(), job_return=ret)
        if not self.folders:
            job.cfg = job.values = None
        return ret

    def _fail_job(self, job: PreparedJob, write: bool = True) -> None:
        """As any failed job: its record says failed and why, in one line (initlab.job)."""
        from initlab.job import fail_job
        from initlab.run import JobFailed

        if write and job.cfg is not None:
            try:
                self._write(job)
            except OSError as e:
                job.error += f"; cannot write {e.filename or job.out_dir}: {e.strerror or e}"
        fail_job(job.out_dir, job.error, job.label)
        self._return(job, JobStatus.FAILED, JobFailed(job.error))

    # ------------------------------------------------------------------ training
    def _train_chunk(self, chunk: list[PreparedJob], device: str, number: int, count: int) -> None:
        from initlab import engine
        from initlab.job import mark_record, save_traceback
        from initlab.record import ERROR_FILE, STATUS_FAILED, STATUS_INTERRUPTED
        from initlab.run import JobFailed, ProgressBar, report_job

        written: list[PreparedJob] = []
        where: list[Any] = []
        try:
            for job in chunk:
                where.append(self._write(job))
                written.append(job)
        except BaseException:
            # Stopped (or a full disk) before this chunk trained: its jobs never started.
            for job in written if self.folders else ():
                shutil.rmtree(job.out_dir, ignore_errors=True)
            raise
        if self.job_callbacks:
            for job in chunk:
                self.callbacks.on_job_start(config=job.full_config(),
                                            task_function=self.launcher.task_function)
        self.in_flight = chunk
        done: dict[int, dict] = {}

        def on_member_done(i: int, summary: dict) -> None:
            if i not in done:
                done[i] = summary
                if summary.get("status") == STATUS_FAILED:  # this member alone
                    chunk[i].error = summary.get("error", "")
                    if self.folders:
                        self._fail_job(chunk[i], write=False)
                    else:  # its row says so already
                        print(f"initlab: error: {chunk[i].label}: {chunk[i].error}", file=sys.stderr,
                              flush=True)
                        self._return(chunk[i], JobStatus.FAILED, JobFailed(chunk[i].error))
                elif summary.get("status") != STATUS_INTERRUPTED and self.folders:  # its one line
                    report_job(chunk[i].cfg, chunk[i].out_dir, in_sweep=True, job_label=chunk[i].label)

        what = f"group {number}/{count}" if count > 1 else "group"
        # While the chunk trains, HydraConfig and the environment are its jobs' (as run_job sets).
        comp = chunk[0].composition
        bar = nullcontext(None) if self.quiet else ProgressBar(
            None, chunk[0].cfg.trainer.epochs, label=f"{what} ({_plural(len(chunk), 'job')})")
        with hydra_config(comp.full), env_override(dict(comp.full.hydra.job.env_set)), bar as progress:
            try:
                summaries = engine.train_group([j.cfg for j in chunk], where,
                                                device=device, threads=self.launcher.threads,
                                                progress=progress,
                                                on_member_done=on_member_done,
                                                overrides=[j.overrides for j in chunk],
                                                launcher="batched")
            except Exception as e:  # noqa: BLE001 - the engine failed: these jobs fail, in one line
                message = f"{type(e).__name__}: {one_line(str(e))}"
                if self.folders:
                    saved = save_traceback(chunk[0].out_dir, ERROR_FILE)
                else:
                    rows = _FailureRows(where[0])
                    saved = f"traceback in {rows.writer.save_error(chunk[0].idx, traceback.format_exc())}"
                print(f"initlab: error: {what} of {_plural(len(chunk), 'job')} ({chunk[0].label} …) "
                      f"failed: {message} ({saved})", file=sys.stderr, flush=True)
                for i, job in enumerate(chunk):
                    if i in done:
                        if done[i].get("status") != STATUS_FAILED:
                            self._return(job, JobStatus.COMPLETED, done[i])
                    else:
                        job.error = message
                        if self.folders:
                            mark_record(job.out_dir, STATUS_FAILED, message)
                        else:
                            rows.fail(job, message)
                        self._return(job, JobStatus.FAILED, JobFailed(message))
                if not self.folders:
                    rows.writer.flush()
                return
        for i, summary in enumerate(summaries):
            on_member_done(i, summary)
        if any(s.get("status") == STATUS_INTERRUPTED for s in summaries):
            self._interrupted(chunk, summaries)
        for job, summary in zip(chunk, summaries):
            if summary.get("status") != STATUS_FAILED:
                self._return(job, JobStatus.COMPLETED, summary)

    # ------------------------------------------------------------------ interrupts
    def _interrupted(self, chunk: list[PreparedJob], summaries: list[dict]) -> None:
        """A signal stopped this chunk: its records are complete up to there; no later job
        starts. One line, then exit 128 + signal (the comparison is still drawn at exit)."""
        stopped = next(s for s in summaries if s.get("status") == "interrupted")
        signum = int(signal.Signals[stopped.get("signal") or "SIGINT"])
        name = signal.Signals(signum).name
        sweep_dir = self.config.hydra.sweep.dir
        print(f"initlab: interrupted by {name} after epoch {stopped.get('epochs_run')}; the records "
              f"of {_plural(len(chunk), 'job')} up to there and of the jobs finished before are in "
              f"{sweep_dir}; later jobs were not started (`initlab report {sweep_dir}`)",
              file=sys.stderr, flush=True)
        sys.exit(128 + signum)

    def _abort(self, signum: int, sweep_dir: Path) -> None:
        """A second signal (or one between chunks) ended the sweep at once."""
        from initlab.job import epochs_in_record, mark_record
        from initlab.record import FINISHED_STATUSES, STATUS_FAILED, STATUS_INTERRUPTED

        name = signal.Signals(signum).name
        # A group record's jobs in training keep their `running` rows, which show as
        # stopped once this process is gone (its identity is in them).
        for job in self.in_flight if self.folders else ():
            status = _status(job.out_dir)
            if status not in (*FINISHED_STATUSES, STATUS_FAILED):  # a failed one keeps its error
                mark_record(job.out_dir, STATUS_INTERRUPTED,
                            f"aborted by {name}; the record holds what was written up to epoch "
                            f"{epochs_in_record(job.out_dir)}")
        print(f"initlab: aborted by {name}; finished jobs keep their records in {sweep_dir}; "
              f"later jobs were not started (`initlab report {sweep_dir}`)", file=sys.stderr, flush=True)
        sys.exit(128 + signum)


class _FailureRows:
    """The rows that say a chunk's unfinished jobs failed, in their group's record (a part
    of its own, after the chunk's)."""

    def __init__(self, slot: Any):
        from initlab.group_record import GROUP_FILE, GroupRecordWriter

        # The group's parameters: every part of a table has the same columns.
        try:
            params = list(json.loads((slot.group_dir / GROUP_FILE).read_text())["params"])
        except (OSError, ValueError, KeyError, TypeError):  # the chunk's own error says more
            params = []
        self.writer = GroupRecordWriter(slot.group_dir, slot.job, params)

    def fail(self, job: PreparedJob, message: str) -> None:
        self.writer.job_row(job.idx, {"status": "failed", "error": message, "seed": job.cfg.seed,
                                      "config": to_plain(job.cfg), "epochs_run": 0}, job.overrides)


def _status(out_dir: Path) -> Optional[str]:
    import json

    try:
        return json.loads((out_dir / "summary.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _overrides_job_events(callbacks: Any) -> bool:
    """Does any configured callback other than initlab's own act per job? (Each job's event
    gets the job's whole config, a copy of the composition: ~20 ms a job. initlab's own
    per-job events draw the progress line of a sweep run job after job; a batched chunk
    shows its own bar, see BatchedSweep.run.)"""
    from initlab.report.compare import SweepComparison

    return any((type(cb).on_job_start is not Callback.on_job_start
                or type(cb).on_job_end is not Callback.on_job_end)
               and not isinstance(cb, SweepComparison)
               for cb in getattr(callbacks, "callbacks", []))
