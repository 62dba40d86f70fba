"""Benchmark: what the browsable report page (index.html) costs, against training measured
in the same run.

  run page     the default run (`initlab run`, key figures drawn): the time the report
               step spends on its page on top of the figures, the page's first write in
               the process (templates loaded then) and a rewrite     target <= 0.5 s
  sweep page   a 100-job seed sweep of the default net (trained with the batched
               launcher): the sweep's own page from the comparison's tables, and the
               pages of its 100 jobs, which the comparison also writes  target <= 3 s

Each number is the best of ``--repeats``; the default run's training time (summary.json
timing.train_s, a bare loop's work) is printed beside it for scale.

Run:  python bench/bench_page.py [--repeats 3] [--jobs 100]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INITLAB = str(Path(sys.executable).with_name("initlab"))


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=100)
    args = parser.parse_args()

    from rich.console import Console

    from initlab.diagnose import unchecked_rules
    from initlab.record import read_record
    from initlab.report import run_findings
    from initlab.report.compare import (
        TABLE_MAX_JOBS,
        comparison_table,
        grad_norm_table,
        read_sweep,
        render_sweep,
    )
    from initlab.report.page import PAGE, run_page, sweep_page, write_job_pages

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # The default run, through the real command: its report step writes the page.
        run_dir = tmp / "run"
        subprocess.run([INITLAB, "run", f"hydra.run.dir={run_dir}", "report.quiet=true"],
                       check=True, cwd=tmp)
        train_s = json.loads((run_dir / "summary.json").read_text())["timing"]["train_s"]
        record = read_record(run_dir)
        findings, unchecked = run_findings(record), unchecked_rules(record)
        # In a run the page is written once, after the figures: matplotlib and the figure
        # modules are loaded then (the page reads the figures' captions from them), and
        # the page's first write pays for loading Jinja2 and compiling its templates.
        import initlab.report.figures  # noqa: F401 - what drawing the figures loaded

        started = time.perf_counter()
        run_page(record, findings, unchecked)
        first = time.perf_counter() - started
        rewrite = best(lambda: run_page(record, findings, unchecked), args.repeats)

        sweep_dir = tmp / "sweep"
        subprocess.run([INITLAB, "run", "-m", f"seed=range(0,{args.jobs})", "hydra/launcher=batched",
                        f"hydra.sweep.dir={sweep_dir}", "report.quiet=true", "report.sweep=false"],
                       check=True, cwd=tmp, stdout=subprocess.DEVNULL)
        jobs, shared = read_sweep(sweep_dir)
        shown = jobs[:TABLE_MAX_JOBS]
        tables = {"comparison": comparison_table(shown, "Sweep comparison"),
                  "comparison_grad_norms": grad_norm_table(shown)}
        sweep_s = best(lambda: sweep_page(sweep_dir, jobs, shown, tables, {}), args.repeats)
        jobs_s = best(lambda: write_job_pages(shown, sweep_dir / PAGE), args.repeats)
        # The whole comparison (tables, figures, pages) for scale.
        whole = best(lambda: render_sweep(sweep_dir, console=Console(quiet=True)), 1)

    print(f"default run: training {train_s:.2f} s")
    print(f"  run page, first write in the process  {first:6.3f} s   target <= 0.5 s  "
          f"{'ok' if first <= 0.5 else 'MISSED'}")
    print(f"  run page, rewrite                      {rewrite:6.3f} s")
    print(f"{len(jobs)}-job sweep:")
    print(f"  sweep page                             {sweep_s:6.3f} s   target <= 3 s    "
          f"{'ok' if sweep_s <= 3 else 'MISSED'}")
    print(f"  + the pages of {len(shown)} jobs               {jobs_s:6.3f} s")
    print(f"  sweep page + job pages                 {sweep_s + jobs_s:6.3f} s   target <= 3 s    "
          f"{'ok' if sweep_s + jobs_s <= 3 else 'MISSED'}")
    print(f"  the whole comparison (tables, figures, pages) {whole:6.2f} s")


if __name__ == "__main__":
    main()
