"""Benchmark: initlab's engine (a stack of one) with every recorder on vs a bare PyTorch loop.

Both train the textbook 2-5-1 sigmoid net (experiment=zero_init, but normal init so the
numbers move) for 2000 full-batch epochs on the same data from the same initial state,
in this one process. Printed: the best-of-N wall time of each and their ratios.

Two bare loops are timed, so the overhead of each part is visible:
  bare_step  forward, loss, backward, optimizer step — nothing else;
  bare_eval  the same plus what the textbook's runner also does every epoch: train
             accuracy, dev loss and accuracy, and a best-on-dev check (one .item()).
The engine does all of bare_eval plus every recorder `initlab run` has: grad norms every
step (and the finiteness check of them each epoch); weights, weight quantiles, activation
statistics, per-unit activity and activation histograms every log epoch; best-state copies
and model copies at a few log epochs; the record streamed at log epochs.

Run:  python bench/bench_trainer.py [--epochs 2000] [--repeats 5]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from initlab.cli import _register_resolvers
from initlab.config import register_configs
from initlab.engine import StackedGroup
from initlab.interrupts import StopOnSignal
from initlab.job import MemberRecord, library_versions


def textbook_config(epochs: int):
    from hydra import compose, initialize_config_module

    register_configs()
    _register_resolvers()
    with initialize_config_module("initlab.conf", version_base="1.3"):
        return compose("config", overrides=["experiment=zero_init", "init=normal",
                                            f"trainer.epochs={epochs}"])


def fresh_model(init_state):
    """The 2-5-1 sigmoid net as plain nn.Linear layers, from ``init_state``."""
    model = nn.Sequential(nn.Linear(2, 5), nn.Sigmoid(), nn.Linear(5, 1), nn.Flatten(0))
    with torch.no_grad():
        for p, name in zip(model.parameters(), init_state):
            p.copy_(init_state[name])
    return model


def bare_step(model, splits, lr, epochs):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    X, y = splits.X_train, splits.y_train
    start = time.perf_counter()
    for _ in range(epochs):
        loss = F.binary_cross_entropy_with_logits(model(X), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def bare_eval(model, splits, lr, epochs):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    X, y, Xd, yd = splits.X_train, splits.y_train, splits.X_dev, splits.y_dev
    best = -1.0
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        logits = model(X)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        train_acc = ((logits.detach() > 0) == (y > 0.5)).float().mean()  # noqa: F841
        model.eval()
        with torch.no_grad():
            dev_logits = model(Xd)
            dev_loss = F.binary_cross_entropy_with_logits(dev_logits, yd)  # noqa: F841
            dev_acc = ((dev_logits > 0) == (yd > 0.5)).float().mean().item()
        if dev_acc > best:
            best = dev_acc
    return time.perf_counter() - start


def initlab_engine(cfg, out_dir: Path, progress: bool) -> float:
    """The engine's fit of a stack of one, with every recorder `initlab run` has."""
    record = MemberRecord(out_dir, cfg, [], torch.device("cpu"), library_versions())
    group = StackedGroup([cfg], [record], torch.device("cpu"))
    bar = None
    if progress:
        from rich.console import Console

        from initlab.run import ProgressBar

        bar = ProgressBar(Console(quiet=True), cfg.trainer.epochs, cfg.data.n_dev)
    with StopOnSignal() as stop:
        return group.fit(stop, bar)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny tensors: threads only add noise
    cfg = textbook_config(args.epochs)
    tmp = Path(tempfile.mkdtemp())
    probe = StackedGroup([cfg], [MemberRecord(tmp / "probe", cfg, [], "cpu", {})], torch.device("cpu"))
    init_state = {name: p[0].clone() for name, p in zip(probe.names, probe.init_state)}
    splits = probe.splits[0]
    lr = cfg.optim.lr

    runners = {
        "bare_step": lambda: bare_step(fresh_model(init_state), splits, lr, args.epochs),
        "bare_eval": lambda: bare_eval(fresh_model(init_state), splits, lr, args.epochs),
        "initlab": lambda: initlab_engine(cfg, tmp / "run", False),
        "initlab+progress": lambda: initlab_engine(cfg, tmp / "bar", True),
    }
    for run in runners.values():  # warm-up: allocator, dispatcher caches
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):  # interleaved, so drift hits every variant alike
        for name, run in runners.items():
            times[name].append(run())
    best = {name: min(ts) for name, ts in times.items()}
    print(f"textbook 2-5-1 sigmoid MLP, {args.epochs} full-batch epochs, "
          f"best of {args.repeats} (median in brackets), torch {torch.__version__}, 1 thread")
    for name, ts in times.items():
        per_epoch_us = best[name] / args.epochs * 1e6
        print(f"  {name:<17} {best[name]:7.3f} s  ({statistics.median(ts):.3f} s)  "
              f"{per_epoch_us:6.1f} us/epoch")
    print("ratios (best times):")
    for name in ("initlab", "initlab+progress"):
        print(f"  {name:<17} / bare_eval = {best[name] / best['bare_eval']:.3f}   "
              f"/ bare_step = {best[name] / best['bare_step']:.3f}")
    print("target: initlab / bare_eval <= 1.10")


if __name__ == "__main__":
    main()
