"""Benchmark: a whole sweep through the CLI, Hydra's basic launcher against hydra/launcher=batched.

Both sides are the same command a user types, measured in wall time in the same run, with
everything a sweep does: composition, training, every job's record (and diagnosis), the
one line per job and the comparison at the sweep root. Per-job figures are off for both
(the sweep default).

1. The textbook 2-5-1 sigmoid net, N(0, 1) init, SGD lr 0.2, 2000 full-batch epochs,
   ``seed=range(0,200)``. Target: batched >= 20x faster than basic.
2. The born-dead question: 10,000 seeds of a depth-10 width-3 ReLU net for 1 epoch
   (batched only; target <= 120 s) and what its records weigh on disk (target < ~1 GB).
   The lean record a sweep of thousands calls for: ``trainer.save_tensors=false`` (no
   data.pt or checkpoints; every table, the summary and the diagnosis stay).

Run:  python bench/bench_sweep.py [--jobs 200] [--basic-jobs 200] [--born-dead-jobs 10000]
                                  [--root DIR]
      --basic-jobs N < --jobs times the basic launcher on the first N seeds and scales its
      time to --jobs (printed as an estimate): a quicker look while iterating.
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
BORN_DEAD = ["model.depth=10", "model.width=3", "act=relu", "init=kaiming_normal",
             "trainer.epochs=1", "trainer.log_every=1", "trainer.save_tensors=false"]
INITLAB = [sys.executable, "-m", "initlab.cli"]


def sweep(overrides: list[str], jobs: int, sweep_dir: Path, batched: bool) -> float:
    """Wall seconds of one `initlab run -m` (output to a log beside the sweep)."""
    command = [*INITLAB, "run", "-m", *overrides, f"seed=range(0,{jobs})",
               f"hydra.sweep.dir={sweep_dir}"] + (["hydra/launcher=batched"] if batched else [])
    started = time.perf_counter()
    with open(f"{sweep_dir}.log", "w") as log:
        rc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "COLUMNS": "120"}).returncode
    seconds = time.perf_counter() - started
    if rc != 0:
        sys.exit(f"bench: `{' '.join(command)}` exited {rc}; see {sweep_dir}.log")
    return seconds


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
    parser.add_argument("--born-dead-jobs", type=int, default=10_000, help="0 skips part 2")
    parser.add_argument("--keep", action="store_true", help="keep the sweep folders (printed)")
    parser.add_argument("--root", type=Path, default=None, help="write the sweeps under this folder")
    args = parser.parse_args()
    basic_jobs = args.basic_jobs or args.jobs
    if args.root is not None:
        args.root.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench_sweep_", dir=args.root))
    try:
        print(f"1. textbook 2-5-1 sigmoid, N(0,1), SGD lr 0.2, 2000 epochs, {args.jobs} seeds", flush=True)
        batched = sweep(TEXTBOOK, args.jobs, root / "batched", batched=True)
        print(f"   batched launcher: {batched:7.1f} s  ({batched / args.jobs * 1e3:.0f} ms a job)",
              flush=True)
        basic = sweep(TEXTBOOK, basic_jobs, root / "basic", batched=False)
        scaled = basic * args.jobs / basic_jobs
        note = f"  (measured on {basic_jobs} jobs, scaled)" if basic_jobs != args.jobs else ""
        print(f"   basic launcher:   {scaled:7.1f} s  ({scaled / args.jobs * 1e3:.0f} ms a job){note}")
        print(f"   batched is {scaled / batched:.1f}x faster (target >= 20x)", flush=True)
        if args.born_dead_jobs:
            n = args.born_dead_jobs
            print(f"2. born dead: depth-10 width-3 ReLU, He init, 1 epoch, {n:,} seeds, batched", flush=True)
            seconds = sweep(BORN_DEAD, n, root / "born_dead", batched=True)
            size = disk_bytes(root / "born_dead")
            files = sum(len(f) for _, _, f in os.walk(root / "born_dead"))
            print(f"   {seconds:.1f} s (target <= 120 s; {seconds / n * 1e3:.1f} ms a job); records on "
                  f"disk {size / 1e6:,.0f} MB (target < ~1 GB): {size / n / 1e3:.1f} KB and "
                  f"{files / n:.0f} files a job")
    finally:
        if args.keep:
            print(f"sweeps kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
