"""Benchmark: the engine (initlab.engine) stacking M jobs against one sequential single run.

``--net 2-5-1`` (default): the textbook 2-5-1 sigmoid net (experiment=zero_init with
init=normal init.std=1, SGD lr 0.2); ``--net 5-layer``: the textbook's 5-layer net
(experiment=vanishing_gradient: 2-3-3-3-3-1 sigmoid, N(0, 0.01^2), biases 1, SGD lr 0.01).
Full batch, every recorder on, members differing in seed. Printed: model-epochs/s of
training (the fit loop with its recorders, no record writing) of one stacked model in one
process (the batched launcher's shards aside) for 1, 16, 256 and 4096 members, and of one
`initlab.run.run` job on the CPU (its summary's timing.train_s) measured in the same
process; the ratio is stacked / sequential.

Run:  python bench/bench_batched.py [--members 1 16 256 4096] [--device cpu|cuda]
      [--net 2-5-1|5-layer] [--model-epochs 400000] [--threads 1]
      (each size trains about this many model-epochs)
The GPU check of the batched launcher (target: >= 1000x one sequential CPU job), 200
epochs of 65,536 members after a warm-up (on this 2-core VM's CPU the same command with
16,384 members and 20 epochs: 5,773 model-epochs/s, 7.2x, 71 s with its setup):
      python bench/bench_batched.py --device cuda --net 5-layer --members 1 65536 \
          --model-epochs 13107200
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from initlab.cli import _register_resolvers
from initlab.config import register_configs
from initlab.engine import StackedGroup
from initlab.interrupts import StopOnSignal
from initlab.job import MemberRecord
from initlab.run import run
from initlab.view import ConfigView

NETS = {
    "2-5-1": ["experiment=zero_init", "init=normal", "init.std=1"],
    # The experiment logs every epoch (it trains one); a training benchmark logs at the
    # trainer's default interval.
    "5-layer": ["experiment=vanishing_gradient", "trainer.log_every=20"],
}


def textbook_config(epochs: int, net: str = "2-5-1"):
    from hydra import compose, initialize_config_module

    register_configs()
    _register_resolvers()
    with initialize_config_module("initlab.conf", version_base="1.3"):
        return compose("config", overrides=[*NETS[net], "trainer.progress=false",
                                            f"trainer.epochs={epochs}"])


def sequential_rate(epochs: int, net: str) -> float:
    """Model-epochs/s of one single run's training on the CPU (best of two)."""
    cfg = textbook_config(epochs, net)
    best = float("inf")
    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            best = min(best, run(cfg, Path(tmp) / "run", quiet=True)["timing"]["train_s"])
    return epochs / best


def stacked_rate(members: int, epochs: int, device: str, net: str) -> float:
    # The members as the batched launcher builds them: read-only views of plain values
    # (an OmegaConf copy per member costs ~1 ms: a minute at 65,536 members).
    base = ConfigView(OmegaConf.to_container(textbook_config(epochs, net), resolve=True))
    cfgs = [base.updated("seed", seed) for seed in range(members)]
    with tempfile.TemporaryDirectory() as tmp:
        records = [MemberRecord(Path(tmp) / str(i), c, [], device, {}) for i, c in enumerate(cfgs)]
        group = StackedGroup(cfgs, records, torch.device(device))
        with StopOnSignal() as stop:
            train_s = group.fit(stop)
    if device == "cuda":
        torch.cuda.synchronize()
    return members * epochs / train_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 16, 256, 4096])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model-epochs", type=int, default=400_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--net", choices=sorted(NETS), default="2-5-1")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seq = sequential_rate(2000, args.net)
    if args.device == "cuda":  # the CUDA context, cuBLAS and the kernels load outside the timing
        stacked_rate(16, 2, args.device, args.net)
    print(f"net {args.net}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
          + f", torch threads {args.threads}")
    print(f"sequential (one initlab.run.run job, 2000 epochs): {seq:,.0f} model-epochs/s")
    print(f"{'members':>8} {'epochs':>7} {'model-epochs/s':>15} {'x sequential':>13}")
    for m in args.members:
        epochs = max(20, min(2000, args.model_epochs // m))
        started = time.perf_counter()
        rate = stacked_rate(m, epochs, args.device, args.net)
        print(f"{m:>8} {epochs:>7} {rate:>15,.0f} {rate / seq:>12.1f}x"
              f"   ({time.perf_counter() - started:.1f} s with setup)", flush=True)


if __name__ == "__main__":
    main()
