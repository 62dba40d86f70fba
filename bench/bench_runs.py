"""Benchmark: what a user waits for, end to end, against bare PyTorch measured in the same run.

Every number is the wall time of a real command in a subprocess (imports included), best
of ``--repeats``, and each target is a ratio or a bound from issue 7:

  smoke run        `initlab run -cn smoke` / a bare script that imports torch and
                   matplotlib, trains the same net on the same data, writes a metrics
                   CSV and one PNG                                    target <= 1.5x
  sweep job        per-job cost beyond training of a basic-launcher seed sweep of the
                   smoke config: (wall(50 jobs) - wall(10 jobs)) / 40 - mean train_s;
                   imports and the one comparison are paid once      target <= 0.5 s
  report           `initlab report RUN`, full figure set: default net target <= 5 s,
                   depth 50 width 64                                 target <= 15 s
  help             `initlab --help`, `initlab run --help`, `--cfg job`  target <= 1 s

Run:  python bench/bench_runs.py [--repeats 3] [--jobs 50]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

INITLAB = [str(Path(sys.executable).with_name("initlab"))]

# The smoke config's net and data, written out by hand: 2-4-4-1 ReLU, Kaiming normal,
# SGD lr 0.1 momentum 0.9, 20 full-batch epochs, moons 120/40/40 with noise 0.2.
BARE_SCRIPT = textwrap.dedent("""
    import csv, math, sys
    import torch
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = sys.argv[1]
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    n = 200
    t = torch.rand(n, generator=g) * math.pi
    upper = torch.arange(n) < n // 2
    X = torch.where(upper[:, None], torch.stack([t.cos(), t.sin()], 1),
                    torch.stack([1 - t.cos(), 0.5 - t.sin()], 1))
    X = X + 0.2 * torch.randn(n, 2, generator=g)
    y = (~upper).float()[:, None]
    order = torch.randperm(n, generator=g)
    X, y = X[order], y[order]
    Xtr, ytr, Xdev, ydev = X[:120], y[:120], X[120:160], y[120:160]
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4),
                                torch.nn.ReLU(), torch.nn.Linear(4, 1))
    for m in model:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.kaiming_normal_(m.weight, generator=g)
            torch.nn.init.zeros_(m.bias)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rows = []
    for epoch in range(1, 21):
        logits = model(Xtr)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, ytr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            d = model(Xdev)
            dev_loss = torch.nn.functional.binary_cross_entropy_with_logits(d, ydev).item()
            dev_acc = ((d > 0).float() == ydev).float().mean().item()
        train_acc = ((logits > 0).float() == ytr).float().mean().item()
        rows.append((epoch, loss.item(), train_acc, dev_loss, dev_acc))
    with open(f"{out}/metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "train_loss", "train_acc", "dev_loss", "dev_acc"])
        w.writerows(rows)
    fig, ax = plt.subplots()
    ax.plot([r[0] for r in rows], [r[1] for r in rows], label="train")
    ax.plot([r[0] for r in rows], [r[3] for r in rows], label="dev")
    ax.legend()
    fig.savefig(f"{out}/loss.png", dpi=120)
""")


def timed(command: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return elapsed


def best_of(repeats: int, make_command) -> float:
    """Best wall time of ``repeats`` runs; ``make_command(i)`` gives a fresh command each time."""
    return min(timed(make_command(i)) for i in range(repeats))


def train_seconds(sweep_dir: Path) -> list[float]:
    return [json.loads(p.read_text())["timing"]["train_s"] for p in sweep_dir.glob("*/summary.json")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="initlab-bench-"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    rows = []

    def target(name: str, value: float, bound: float, unit: str, detail: str = "") -> None:
        rows.append((name, value, bound, unit, detail))
        verdict = "ok" if value <= bound else "OVER"
        print(f"{name:<34} {value:8.2f} {unit:<2} (target <= {bound:g} {unit}) {verdict}  {detail}",
              flush=True)

    # ---- smoke run vs bare script (interleaved, so both see the same machine load)
    script = tmp / "bare.py"
    script.write_text(BARE_SCRIPT)
    bare, smoke = [], []
    for i in range(args.repeats):
        out = tmp / f"bare{i}"
        out.mkdir()
        bare.append(timed([sys.executable, str(script), str(out)]))
        smoke.append(timed([*INITLAB, "run", "-cn", "smoke", f"hydra.run.dir={tmp}/smoke{i}"]))
    ratio = min(smoke) / min(bare)
    target("smoke run / bare script", ratio, 1.5, "x",
           f"({min(smoke):.2f} s vs {min(bare):.2f} s)")

    # ---- per-job overhead of a basic-launcher seed sweep
    small = max(2, args.jobs // 5)
    walls = {}
    for n in (small, args.jobs):
        sweep = tmp / f"sweep{n}"
        walls[n] = timed([*INITLAB, "run", "-m", f"seed=range(0,{n})", "-cn", "smoke",
                          f"hydra.sweep.dir={sweep}", "report.quiet=true"])
    per_job = (walls[args.jobs] - walls[small]) / (args.jobs - small)
    train = statistics.fmean(train_seconds(tmp / f"sweep{args.jobs}"))
    target(f"sweep: per-job overhead ({args.jobs} jobs)", per_job - train, 0.5, "s",
           f"({walls[args.jobs]:.1f} s for {args.jobs} jobs, {walls[small]:.1f} s for {small}; "
           f"train {train * 1000:.0f} ms/job)")

    # ---- initlab report, full figure set
    for name, overrides, bound in (("default net", [], 5.0),
                                   ("depth 50 width 64", ["model.depth=50", "model.width=64"], 15.0)):
        run_dir = tmp / name.replace(" ", "_")
        timed([*INITLAB, "run", *overrides, f"hydra.run.dir={run_dir}", "report=minimal",
               "report.quiet=true"])

        def fresh(i, run_dir=run_dir):
            shutil.rmtree(run_dir / "figures", ignore_errors=True)
            return [*INITLAB, "report", str(run_dir)]

        target(f"report, full set: {name}", best_of(args.repeats, fresh), bound, "s")

    # ---- help and config display
    for label, command in (("initlab --help", ["--help"]), ("initlab run --help", ["run", "--help"]),
                           ("initlab run --cfg job", ["run", "--cfg", "job"])):
        target(label, best_of(args.repeats, lambda i, c=command: [*INITLAB, *c]), 1.0, "s")

    over = [r[0] for r in rows if r[1] > r[2]]
    print("all targets met" if not over else f"over target: {', '.join(over)}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
