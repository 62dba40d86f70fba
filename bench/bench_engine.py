"""Benchmark: initlab's engine against what a researcher would write instead, JAX's
``jit(vmap(train))`` with ``lax.scan`` over epochs, in the same process run.

Both train the same M members from the same initial weights and data (the JAX side is fed
initlab's), full batch, plain SGD, and record the same quantities: every parameter's
gradient L2 norm at every step, the train/dev loss and accuracy every epoch, and at each
log epoch the weights and each hidden layer's activation mean and std. Printed per net
and M: model-epochs per second of training (JAX's compile timed apart), the ratio
initlab / JAX (target >= 1.0), and the largest difference of the members' last training
losses (both must have trained the same thing: float32 noise, not a different result).

Nets: ``2-5-1`` (the textbook's zero_init net with N(0, 1) weights, sigmoid, SGD lr 0.2),
``5-layer`` (the textbook's vanishing_gradient net, 2-3-3-3-3-1, N(0, 0.01^2), biases 1,
SGD lr 0.01) and ``deep`` (depth 30, width 128, ReLU, He normal init, SGD lr 0.01).

Needs JAX (CPU):  pip install -e '.[bench]'
Run:  python bench/bench_engine.py [--nets 2-5-1 5-layer deep] [--members 1 16 256 4096]
                                   [--threads 2] [--budget-scale 1.0]
      --end-to-end: also time a whole `initlab run` against a whole JAX script process
      (imports and compile included): 200,000 epochs at M = 1 (2-5-1).
"""

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from initlab.cli import _register_resolvers
from initlab.config import register_configs
from initlab.engine import StackedGroup
from initlab.interrupts import StopOnSignal
from initlab.job import MemberRecord
from initlab.view import ConfigView

NETS = {
    "2-5-1": ["experiment=zero_init", "init=normal", "init.std=1", "trainer.log_every=50"],
    "5-layer": ["experiment=vanishing_gradient", "trainer.log_every=20"],
    "deep": ["model.depth=30", "model.width=128", "act=relu", "init=kaiming_normal", "optim=sgd",
             "optim.lr=0.01", "trainer.log_every=20"],
}
# Model-epochs each (net, M) trains (epochs = budget / M, within [MIN_EPOCHS, MAX_EPOCHS]).
BUDGET = {"2-5-1": 400_000, "5-layer": 400_000, "deep": 200}
MIN_EPOCHS, MAX_EPOCHS = 2, 2000
# A group is skipped when its parameters and activations alone would pass this (bytes).
MEMORY_LIMIT = 12e9


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    register_configs()
    _register_resolvers()
    with initialize_config_module("initlab.conf", version_base="1.3"):
        cfg = hydra_compose("config", overrides=[*overrides, "trainer.progress=false"])
    return ConfigView(OmegaConf.to_container(cfg, resolve=True))


def footprint(cfg, members: int) -> float:
    """Bytes of the stacked parameters (x4: params, best, init, grads) and one epoch's
    activations (pre and post, x2 for the backward) of a group."""
    m, d = cfg.model, cfg.data
    sizes = [d.dim] + [m.width] * (m.depth - 1) + [1]
    params = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    activations = sum(sizes[1:-1]) * d.n_train
    return 4.0 * members * (4 * params + 4 * activations)


def initlab_training(cfg, members: int, epochs: int):
    """(seconds of initlab's fit, the group) for ``members`` seeds."""
    cfgs = [cfg.updated("trainer.epochs", epochs).updated("seed", s) for s in range(members)]
    with tempfile.TemporaryDirectory() as tmp:
        records = [MemberRecord(Path(tmp) / str(i), c, [], "cpu", {}) for i, c in enumerate(cfgs)]
        group = StackedGroup(cfgs, records, torch.device("cpu"))
        with StopOnSignal() as stop:
            seconds = group.fit(stop)
    return seconds, group


def jax_trainer(depth: int, act: str, lr: float, epochs: int, log_every: int):
    """``train(params, data) -> (params, records)`` for one member, to be vmapped: SGD on the
    mean BCE of the logits, full batch, recording what initlab records."""
    import jax
    import jax.numpy as jnp

    activation = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh}[act]

    def forward(params, x, hidden=None):
        for w, b in params[:-1]:
            x = activation(x @ w.T + b)
            if hidden is not None:
                hidden.append(x)
        w, b = params[-1]
        return (x @ w.T + b)[:, 0]

    def bce(logits, y):  # torch's binary_cross_entropy_with_logits, mean
        return jnp.mean(jnp.maximum(logits, 0) - logits * y + jnp.log1p(jnp.exp(-jnp.abs(logits))))

    def loss(params, x, y):
        logits = forward(params, x)
        return bce(logits, y), logits

    grad = jax.value_and_grad(loss, has_aux=True)

    def epoch(carry, _):
        params, data = carry
        (train_loss, logits), grads = grad(params, data["X_train"], data["y_train"])
        norms = jnp.stack([jnp.linalg.norm(g) for layer in grads for g in layer])
        train_correct = jnp.sum((logits > 0) == (data["y_train"] > 0.5))
        params = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
        dev_logits = forward(params, data["X_dev"])
        dev_loss = bce(dev_logits, data["y_dev"])
        dev_correct = jnp.sum((dev_logits > 0) == (data["y_dev"] > 0.5))
        metrics = jnp.stack([train_loss, train_correct, dev_loss, dev_correct])
        return (params, data), (metrics, norms)

    def block(carry, _):  # log_every epochs, then the log-epoch measurements
        carry, (metrics, norms) = jax.lax.scan(epoch, carry, None, length=log_every)
        params, data = carry
        hidden = []
        forward(params, data["X_train"], hidden)
        stats = jnp.stack([jnp.stack([h.mean(), h.std()]) for h in hidden])
        weights = jnp.concatenate([p.ravel() for layer in params for p in layer])
        return carry, (metrics, norms, stats, weights)

    blocks, rest = divmod(epochs, log_every)

    def train(params, data):
        carry, logged = jax.lax.scan(block, (params, data), None, length=blocks)
        if rest:
            carry, tail = jax.lax.scan(epoch, carry, None, length=rest)
            logged = (logged, tail)
        return carry[0], logged

    return jax.jit(jax.vmap(train))


def jax_training(cfg, group: StackedGroup, epochs: int):
    """(compile seconds, training seconds, first- and last-epoch train losses (M, 2)) of JAX's version,
    from the group's initial weights and data."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    init = [p.numpy() for p in group.init_state]
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in zip(init[0::2], init[1::2])]
    data = {k: jnp.asarray(group.data[k].numpy()) for k in ("X_train", "y_train", "X_dev", "y_dev")}
    train = jax_trainer(cfg.model.depth, cfg.act.name, cfg.optim.lr, epochs, cfg.trainer.log_every)
    started = time.perf_counter()
    compiled = train.lower(params, data).compile()
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    out = jax.block_until_ready(compiled(params, data))
    train_s = time.perf_counter() - started
    logged = out[1]
    metrics = logged[1][0] if isinstance(logged, tuple) and len(logged) == 2 else logged[0]
    losses = np.asarray(metrics).reshape(len(init[0]), -1, 4)[:, :, 0]
    return compile_s, train_s, losses[:, [0, -1]]


JAX_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {bench!r})
    from bench_engine import compose, jax_trainer
    import jax, jax.numpy as jnp, numpy as np
    cfg = compose({overrides!r})
    rng = np.random.default_rng(0)
    sizes = [2] + [cfg.model.width] * (cfg.model.depth - 1) + [1]
    params = [(jnp.asarray(rng.normal(0, 1, ({m}, o, i)).astype("float32")),
               jnp.zeros(({m}, o), "float32")) for i, o in zip(sizes, sizes[1:])]
    x = rng.normal(0, 1, ({m}, 800, 2)).astype("float32")
    y = (rng.random(({m}, 800)) > 0.5).astype("float32")
    data = dict(X_train=x[:, :640], y_train=y[:, :640], X_dev=x[:, 640:], y_dev=y[:, 640:])
    out = jax.block_until_ready(jax_trainer(cfg.model.depth, cfg.act.name, cfg.optim.lr,
                                            {epochs}, cfg.trainer.log_every)(params, data))
""")


def end_to_end(members: int, epochs: int, threads: int) -> None:
    """A whole `initlab run` (or batched sweep) against a whole JAX script process."""
    overrides = NETS["2-5-1"] + [f"trainer.epochs={epochs}", f"trainer.threads={threads}"]
    with tempfile.TemporaryDirectory() as tmp:
        if members == 1:
            command = [sys.executable, "-m", "initlab.cli", "run", *overrides,
                       f"hydra.run.dir={tmp}/run", "trainer.progress=false"]
        else:
            command = [sys.executable, "-m", "initlab.cli", "run", "-m", *overrides,
                       f"seed=range(0,{members})", f"hydra.sweep.dir={tmp}/sweep",
                       "hydra/launcher=batched", "report.quiet=true"]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        initlab_s = time.perf_counter() - started
        script = JAX_SCRIPT.format(bench=str(Path(__file__).parent), overrides=overrides,
                                   m=members, epochs=epochs)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", script], check=True)
        jax_s = time.perf_counter() - started
    print(f"end to end, 2-5-1, M={members}, {epochs:,} epochs: initlab {initlab_s:.1f} s, "
          f"JAX {jax_s:.1f} s, initlab / JAX speed {jax_s / initlab_s:.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    parser.add_argument("--members", type=int, nargs="+", default=[1, 16, 256, 4096])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-scale", type=float, default=1.0,
                        help="scale every net's model-epochs (a quicker look: 0.1)")
    parser.add_argument("--end-to-end", action="store_true")
    args = parser.parse_args()
    try:
        import jax
    except ImportError:
        sys.exit("bench_engine: JAX is not installed: pip install -e '.[bench]'")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} ({args.threads} threads), jax {jax.__version__} "
          f"({jax.devices()[0].platform}); model-epochs/s of training, same init and data")
    print(f"{'net':>8} {'M':>5} {'epochs':>6} {'initlab':>10} {'JAX':>10} {'ratio':>6} "
          f"{'JAX compile':>11} {'max |Δ loss| first, last':>24}")
    for net in args.nets:
        cfg = compose(NETS[net])
        for m in args.members:
            epochs = max(MIN_EPOCHS, min(MAX_EPOCHS, int(BUDGET[net] * args.budget_scale) // m))
            epochs -= epochs % cfg.trainer.log_every if epochs > cfg.trainer.log_every else 0
            if footprint(cfg, m) > MEMORY_LIMIT:
                print(f"{net:>8} {m:>5}  skipped: ~{footprint(cfg, m) / 1e9:.0f} GB of parameters "
                      f"and activations (limit {MEMORY_LIMIT / 1e9:.0f} GB)", flush=True)
                continue
            cfg_net = cfg.updated("trainer.log_every", min(cfg.trainer.log_every, epochs))
            initlab_s, group = initlab_training(cfg_net, m, epochs)
            compile_s, jax_s, jax_losses = jax_training(cfg_net, group, epochs)
            ours = group.metrics[[0, epochs - 1], 0].numpy().T
            first, last = abs(ours - jax_losses).max(0)
            print(f"{net:>8} {m:>5} {epochs:>6} {m * epochs / initlab_s:>10,.0f} "
                  f"{m * epochs / jax_s:>10,.0f} {jax_s / initlab_s:>5.2f}x {compile_s:>10.1f}s "
                  f"{first:>11.1e}, {last:.1e}", flush=True)
    if args.end_to_end:
        end_to_end(1, 200_000, args.threads)
        end_to_end(256, 20_000, args.threads)


if __name__ == "__main__":
    main()
