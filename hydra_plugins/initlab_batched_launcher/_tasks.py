"""A batched sweep's chunks as submitit tasks (``hydra.launcher.executor=submitit_slurm``, or
``submitit_local`` on this machine): one task trains one chunk of a group, in a process of
its own, into the group's record (:mod:`initlab.group_record`), through the same engine.

A task's rows are streamed as it trains, so a task killed at its time limit keeps what it
wrote; it is requeued (submitit's checkpoint: SIGUSR2 before the limit) and then trains
again only the jobs without a finished row. The launcher waits for every task, says each
one's end in a line, and the comparison reads the group records: a job no task finished is
shown as it stands (stopped, interrupted, or not started).
"""

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXECUTORS = {"submitit_local": "local", "submitit_slurm": "slurm"}


@dataclass
class ChunkSpec:
    """What a task needs, in plain values (it is pickled to the task's process)."""

    number: int
    configs: list[dict]
    slots: list[Any]  # GroupSlots, their .hydra/ files rendered
    overrides: list[list[str]]
    device: str
    threads: int


class ChunkTask:
    """The function a task runs: train a chunk, return its jobs' summaries (as the engine
    returns them for a group record: how each ended). Checkpointable: requeued, it trains
    the jobs without a finished row."""

    def __call__(self, spec: ChunkSpec) -> list[dict]:
        from initlab.engine import train_group
        from initlab.group_record import read_group
        from initlab.record import STATUS_COMPLETED, STATUS_DIVERGED
        from initlab.run import resolve_device
        from initlab.view import config_view

        done = {}
        if spec.slots and (spec.slots[0].group_dir / "jobs").is_dir():
            rows = read_group(spec.slots[0].group_dir, init_signal=False)
            # Ran to its end in an earlier try; an interrupted one trains again.
            done = {s.job: rows[s.job].summary for s in spec.slots if s.job in rows
                    and rows[s.job].status in (STATUS_COMPLETED, STATUS_DIVERGED)}
        todo = [k for k, s in enumerate(spec.slots) if s.job not in done]
        device = str(resolve_device(spec.device))  # on the node that trains (auto: its GPU)
        trained = iter(train_group([config_view(spec.configs[k]) for k in todo],
                                   [spec.slots[k] for k in todo], device=device,
                                   threads=spec.threads, overrides=[spec.overrides[k] for k in todo],
                                   launcher="batched")) if todo else iter(())
        return [_slim(done[s.job]) if s.job in done else next(trained) for s in spec.slots]

    def checkpoint(self, spec: ChunkSpec) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(ChunkTask(), spec)


def _slim(summary: dict) -> dict:
    from initlab.engine import SLIM_SUMMARY_KEYS

    return {k: summary[k] for k in SLIM_SUMMARY_KEYS if k in summary}


def submit(executor_name: str, parameters: dict, folder: Path, specs: list[ChunkSpec],
           quiet: bool) -> list[tuple[ChunkSpec, list[dict] | None, str]]:
    """Submit every chunk as one task (a job array), wait for all; per chunk (spec, the
    summaries or None, why it has none)."""
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=EXECUTORS[executor_name])
    executor.update_parameters(**parameters)
    with executor.batch():
        tasks = [executor.submit(ChunkTask(), spec) for spec in specs]
    if not quiet:
        print(f"{len(tasks)} task{'s' if len(tasks) != 1 else ''} submitted through {executor_name} "
              f"(logs: {folder})", flush=True)
    outcome: dict[int, tuple[list[dict] | None, str]] = {}
    by_job = {id(t): spec for t, spec in zip(tasks, specs)}
    for task in submitit.helpers.as_completed(tasks):
        spec = by_job[id(task)]
        try:
            outcome[spec.number] = (task.result(), "")
        except Exception as e:  # noqa: BLE001 - a task that failed or was killed: its jobs say so
            why = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            outcome[spec.number] = (None, f"task {task.job_id} ended without a result: {why}")
        if not quiet:
            summaries, why = outcome[spec.number]
            print(f"task {len(outcome)}/{len(tasks)} (chunk {spec.number}, {len(spec.slots)} jobs): "
                  + (why or "done"), file=sys.stderr if why else sys.stdout, flush=True)
    return [(spec, *outcome[spec.number]) for spec in specs]
