"""Benchmark: a whole sweep through the CLI, Hydra's basic launcher against hydra/launcher=batched.

Both sides are the same command a user types, measured in wall time in the same run, with
everything a sweep does: composition, training, every job's record (and diagnosis), the
one line per job and the comparison at the sweep root. Per-job figures are off for both
(the sweep default).

1. The textbook 2-5-1 sigmoid net, N(0, 1) init, SGD lr 0.2, 2000 full-batch epochs,
   ``seed=range(0,200)``. Target: batched >= 20x faster than basic.
2. The born-dead question at scale: ``experiment=lu2019 'seed=range(0,N/2)'`` (depth 10
   and 20, width 3, ReLU, He init: N jobs, default 100,000) with the batched launcher,
   whose jobs keep no folders past hydra.launcher.max_job_folders: one Parquet record per
   group. Measured: the whole command (Hydra's expansion of N override lists included;
   target <= 120 s), the peak memory of its processes (the launcher and its shards, PSS
   summed, sampled every 0.2 s; target <= 2 GB), the records on disk (target <= 1 GB),
   then `initlab report` of the sweep (its comparison alone; target <= 10 s) and its page
   (target <= 2 MB).

Run:  python bench/bench_sweep.py [--jobs 200] [--basic-jobs 200] [--scale-jobs 100000]
                                  [--root DIR]
      --basic-jobs N < --jobs times the basic launcher on the first N seeds and scales its
      time to --jobs (printed as an estimate): a quicker look while iterating.
      --jobs 0 skips part 1, --scale-jobs 0 part 2.
      --root: where the sweeps are written (default: a new temporary folder). The cost of
      creating a file varies with the file system (measured here: 30-700 us a file, most
      of it kernel CPU), and a job writes ~15 files.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEXTBOOK = ["experiment=zero_init", "init=normal", "init.std=1"]
INITLAB = [sys.executable, "-m", "initlab.cli"]


def sweep(overrides: list[str], jobs: int, sweep_dir: Path, batched: bool,
          seeds: int | None = None) -> tuple[float, int]:
    """(wall seconds, peak memory in bytes) of one `initlab run -m` (output to a log beside
    the sweep); ``seeds``: seed=range(0, seeds) (default: jobs)."""
    command = [*INITLAB, "run", "-m", *overrides, f"seed=range(0,{seeds or jobs})",
               f"hydra.sweep.dir={sweep_dir}"] + (["hydra/launcher=batched"] if batched else [])
    started = time.perf_counter()
    with open(f"{sweep_dir}.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "COLUMNS": "120"})
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_memory(proc.pid))
            time.sleep(0.2)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"bench: `{' '.join(command)}` exited {proc.returncode}; see {sweep_dir}.log")
    return seconds, peak


def tree_memory(pid: int) -> int:
    """The proportional set size (bytes) of ``pid`` and its children summed: forked shards
    share pages, which PSS counts once. 0 where /proc has no smaps_rollup."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def disk_bytes(path: Path) -> int:
    """What the files take on disk (allocated blocks, as du counts them)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--basic-jobs", type=int, default=None,
                        help="time the basic launcher on this many jobs and scale (default: --jobs)")
    parser.add_argument("--scale-jobs", type=int, default=100_000, help="0 skips part 2")
    parser.add_argument("--keep", action="store_true", help="keep the sweep folders (printed)")
    parser.add_argument("--root", type=Path, default=None, help="write the sweeps under this folder")
    args = parser.parse_args()
    basic_jobs = args.basic_jobs or args.jobs
    if args.root is not None:
        args.root.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench_sweep_", dir=args.root))
    try:
        if args.jobs:
            print(f"1. textbook 2-5-1 sigmoid, N(0,1), SGD lr 0.2, 2000 epochs, {args.jobs} seeds",
                  flush=True)
            batched, _ = sweep(TEXTBOOK, args.jobs, root / "batched", batched=True)
            print(f"   batched launcher: {batched:7.1f} s  ({batched / args.jobs * 1e3:.0f} ms a job)",
                  flush=True)
            basic, _ = sweep(TEXTBOOK, basic_jobs, root / "basic", batched=False)
            scaled = basic * args.jobs / basic_jobs
            note = f"  (measured on {basic_jobs} jobs, scaled)" if basic_jobs != args.jobs else ""
            print(f"   basic launcher:   {scaled:7.1f} s  ({scaled / args.jobs * 1e3:.0f} ms a job){note}")
            print(f"   batched is {scaled / batched:.1f}x faster (target >= 20x)", flush=True)
        if args.scale_jobs:
            n = args.scale_jobs
            print(f"2. born dead at scale: experiment=lu2019 (depth 10 and 20), {n:,} jobs, batched",
                  flush=True)
            where = root / "born_dead"
            seconds, peak = sweep(["experiment=lu2019"], n, where, batched=True, seeds=n // 2)
            size = disk_bytes(where)
            files = sum(len(f) for _, _, f in os.walk(where))
            print(f"   the sweep: {seconds:.1f} s (target <= 120 s; {seconds / n * 1e3:.2f} ms a job); "
                  f"peak memory {peak / 2**30:.2f} GB (target <= 2 GB)")
            print(f"   records on disk {size / 1e6:,.0f} MB (target <= 1 GB), {files} files")
            started = time.perf_counter()
            with open(f"{where}.report.log", "w") as log:
                rc = subprocess.run([*INITLAB, "report", str(where)], stdout=log,
                                    stderr=subprocess.STDOUT).returncode
            report_s = time.perf_counter() - started
            if rc != 0:
                sys.exit(f"bench: initlab report {where} exited {rc}; see {where}.report.log")
            page = (where / "index.html").stat().st_size
            print(f"   its comparison (`initlab report`, imports included): {report_s:.1f} s "
                  f"(target <= 10 s); its page {page / 1e6:.2f} MB (target <= 2 MB)", flush=True)
    finally:
        if args.keep:
            print(f"sweeps kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
