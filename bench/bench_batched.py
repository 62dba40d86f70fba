"""Benchmark: the stacked engine (initlab.batched) against one sequential single run.

The textbook 2-5-1 sigmoid net (experiment=zero_init with init=normal init.std=1, SGD
lr 0.2, full batch, every recorder on), members differing in seed. Printed: model-epochs/s
of training (the fit loop with its recorders, no record writing) for 1, 16, 256 and 4096
members, and of one `initlab.run.run` job (its summary's timing.train_s) measured in the
same process; the ratio is stacked / sequential.

Run:  python bench/bench_batched.py [--members 1 16 256 4096] [--device cpu|cuda]
      [--model-epochs 400000]   (each size trains about this many model-epochs)
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from initlab.batched import StackedGroup
from initlab.cli import _register_resolvers
from initlab.config import register_configs
from initlab.run import run

OVERRIDES = ["experiment=zero_init", "init=normal", "init.std=1", "trainer.progress=false"]


def textbook_config(epochs: int):
    from hydra import compose, initialize_config_module

    register_configs()
    _register_resolvers()
    with initialize_config_module("initlab.conf", version_base="1.3"):
        return compose("config", overrides=[*OVERRIDES, f"trainer.epochs={epochs}"])


def sequential_rate(epochs: int) -> float:
    """Model-epochs/s of one single run's training (best of two)."""
    cfg = textbook_config(epochs)
    best = float("inf")
    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            best = min(best, run(cfg, Path(tmp) / "run", quiet=True)["timing"]["train_s"])
    return epochs / best


def stacked_rate(members: int, epochs: int, device: str) -> float:
    base = OmegaConf.to_container(textbook_config(epochs), resolve=True)
    cfgs = [OmegaConf.create({**base, "seed": seed}) for seed in range(members)]
    group = StackedGroup(cfgs, torch.device(device))
    train_s = group.fit()
    if device == "cuda":
        torch.cuda.synchronize()
    return members * epochs / train_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 16, 256, 4096])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model-epochs", type=int, default=400_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seq = sequential_rate(2000)
    print(f"device {args.device}, torch threads {args.threads}")
    print(f"sequential (one initlab.run.run job, 2000 epochs): {seq:,.0f} model-epochs/s")
    print(f"{'members':>8} {'epochs':>7} {'model-epochs/s':>15} {'x sequential':>13}")
    for m in args.members:
        epochs = max(20, min(2000, args.model_epochs // m))
        started = time.perf_counter()
        rate = stacked_rate(m, epochs, args.device)
        print(f"{m:>8} {epochs:>7} {rate:>15,.0f} {rate / seq:>12.1f}x"
              f"   ({time.perf_counter() - started:.1f} s with setup)", flush=True)


if __name__ == "__main__":
    main()
