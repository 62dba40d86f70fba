"""The one engine (initlab.engine): its numbers against plain autograd and torch.optim, a
member of a stack against the same job alone (byte for byte, every recorder's file), stops,
signals, shards, and records that stream while training."""

import json
import math
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import initlab.engine
import initlab.shards
from initlab.engine import StackedOptimizer, group_key, train_group
from initlab.job import MemberRecord
from initlab.model import activation_backward, feature_major, loss_and_grads, make_activation
from initlab.run import run
from tests.conftest import compose_config

SMALL = ("data.n_samples=400", "data.n_train=256", "data.n_dev=72", "data.n_test=72",
         "model.width=8", "trainer.log_every=10", "trainer.progress=false")
ROOT = Path(__file__).resolve().parents[1]


def read_rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()[1:]]


def files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file()}


def timeless(summary: dict) -> dict:
    """A summary less what says when, by which process and through which launcher it was written."""
    return {k: v for k, v in summary.items() if k not in ("timing", "process", "updated", "launcher")}


def _flat(tensors: dict) -> dict:
    """epochs.pt's {epoch: {name: tensor}} as {(epoch, name): tensor}; others as they are."""
    return {(outer, name): t for outer, state in tensors.items() for name, t in state.items()} \
        if all(isinstance(v, dict) for v in tensors.values()) else tensors


def assert_same_record(a: Path, b: Path) -> None:
    """Every file byte for byte (the tensors too: torch.save of equal tensors), summary.json
    less when and by whom it was written."""
    fa, fb = files(a), files(b)
    assert set(fa) == set(fb)
    for name in fa:
        if name == "summary.json":
            assert timeless(json.loads(fa[name])) == timeless(json.loads(fb[name]))
        elif name.endswith(".pt"):
            flat_a, flat_b = (_flat(torch.load(a / name)), _flat(torch.load(b / name)))
            assert list(flat_a) == list(flat_b), name
            for key in flat_a:
                assert torch.equal(flat_a[key], flat_b[key]), (name, key)
        else:
            assert fa[name] == fb[name], name


def both_ways(tmp: Path, jobs: list[list[str]]) -> list[tuple[Path, Path]]:
    """Train ``jobs`` (override lists) stacked, group by group, and each alone (initlab.run.run)."""
    torch.set_num_threads(1)
    cfgs = [compose_config(*SMALL, *overrides) for overrides in jobs]
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(group_key(cfg), []).append(i)
    pairs = [(tmp / f"stacked{i}", tmp / f"alone{i}") for i in range(len(cfgs))]
    for members in groups.values():
        done: list[int] = []
        summaries = train_group([cfgs[i] for i in members], [pairs[i][0] for i in members],
                                on_member_done=lambda k, s, done=done: done.append(k),
                                launcher="batched")
        assert done == list(range(len(members)))
        assert all(s["launcher"] == "batched" for s in summaries)
    for cfg, (_, alone) in zip(cfgs, pairs):
        assert "launcher" not in run(cfg, alone, quiet=True)
    return pairs


# Mini-batches, momentum, two activations, two inits, two learning rates, three seeds: the
# full product in the slow suite, a cover of every pair of values in the fast one.
MIXED = [
    [f"act={act}", f"seed={seed}", f"init={init}", f"optim.lr={lr}", "trainer.batch_size=32",
     "optim.momentum=0.9", "trainer.epochs=30"]
    for act in ("relu", "tanh") for seed in (0, 1, 2)
    for init in ("kaiming_normal", "xavier_uniform") for lr in (0.05, 0.3)
]
MIXED_PAIRS = [job for job in MIXED if (MIXED.index(job) % 5 == 0)]


@pytest.mark.parametrize("jobs", [pytest.param(MIXED, marks=pytest.mark.slow, id="all"),
                                  pytest.param(MIXED_PAIRS, id="pairs")])
def test_a_member_of_a_stack_writes_byte_for_byte_the_record_of_the_job_alone(tmp_path, jobs):
    """Every recorder's file (metrics, gradient norms, weights, weight quantiles, activation
    statistics, units, histograms), every checkpoint, data.pt and the summary."""
    assert len({group_key(compose_config(*SMALL, *o)) for o in jobs}) == 2
    for stacked, alone in both_ways(tmp_path, jobs):
        assert_same_record(stacked, alone)


def test_members_differing_in_decay_noise_bias_and_adam_equal_their_runs_alone(tmp_path):
    jobs = [["optim=adam", f"optim.lr={lr}", f"optim.weight_decay={wd}", f"data.noise={noise}",
             f"init.bias={bias}", "seed=3", "trainer.epochs=15", "trainer.batch_size=64"]
            for lr, wd, noise, bias in ((0.01, 0.0, 0.2, 0.0), (0.05, 0.01, 0.1, 0.1))]
    jobs += [["optim=momentum", f"optim.momentum={mom}", f"optim.weight_decay={wd}", "seed=4",
              "trainer.epochs=15"] for mom, wd in ((0.0, 0.0), (0.9, 0.001), (0.5, 0.0))]
    for pair in both_ways(tmp_path, jobs):
        assert_same_record(*pair)


def test_a_diverging_member_stops_alone_and_the_others_train_on(tmp_path):
    common = ["act=lrelu", "optim=sgd", "trainer.epochs=50"]
    jobs = [[*common, "optim.lr=0.1", "seed=0"], [*common, "optim.lr=100", "seed=0"],
            [*common, "optim.lr=0.5", "seed=1"]]
    pairs = both_ways(tmp_path, jobs)
    for pair in pairs:
        assert_same_record(*pair)
    summaries = [json.loads((b / "summary.json").read_text()) for b, _ in pairs]
    assert [s["status"] for s in summaries] == ["completed", "diverged", "completed"]
    assert summaries[1]["epochs_run"] < 50
    assert len(read_rows(pairs[1][0] / "metrics.csv")) == summaries[1]["epochs_run"]
    assert [s["epochs_run"] for s in summaries[::2]] == [50, 50]


def test_configs_of_different_groups_are_refused(tmp_path):
    cfgs = [compose_config(*SMALL, "act=relu"), compose_config(*SMALL, "act=tanh")]
    with pytest.raises(ValueError, match="group keys"):
        train_group(cfgs, [tmp_path / "a", tmp_path / "b"])


# ----------------------------------------------------------- numbers against torch itself
@pytest.mark.parametrize("act_name", ["sigmoid", "tanh", "relu", "lrelu", "elu", "selu", "gelu",
                                      "silu", "identity"])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_the_hand_written_backward_equals_autograd(act_name, depth):
    """model.loss_and_grads against plain autograd through nn.Linear layers of each member."""
    module = make_activation(compose_config(f"act={act_name}").act)
    backward = activation_backward(module)
    assert backward is not None
    gen = torch.Generator().manual_seed(depth)
    members, n, widths = 3, 50, [2] + [4] * (depth - 1) + [1]
    x = torch.randn(members, n, 2, generator=gen)
    y = (torch.rand(members, n, generator=gen) > 0.5).float()
    params = []
    for fan_in, fan_out in zip(widths, widths[1:]):
        params += [torch.randn(members, fan_out, fan_in, generator=gen),
                   torch.randn(members, fan_out, generator=gen) * 0.5]
    logits, loss, grads = loss_and_grads(params, feature_major(module), backward,
                                         x.transpose(1, 2).contiguous(), y)
    for m in range(members):
        layers = [nn.Linear(i, o) for i, o in zip(widths, widths[1:])]
        with torch.no_grad():
            for k, layer in enumerate(layers):
                layer.weight.copy_(params[2 * k][m])
                layer.bias.copy_(params[2 * k + 1][m])
        h = x[m]
        for layer in layers[:-1]:
            h = module(layer(h))
        solo_logits = layers[-1](h).squeeze(1)
        solo_loss = F.binary_cross_entropy_with_logits(solo_logits, y[m])
        solo_loss.backward()
        assert torch.allclose(logits[m], solo_logits, rtol=1e-5, atol=1e-6)
        assert torch.allclose(loss[m], solo_loss, rtol=1e-5, atol=1e-7)
        for k, layer in enumerate(layers):
            assert torch.allclose(grads[2 * k][m], layer.weight.grad, rtol=1e-4, atol=1e-7), (k, "weight")
            assert torch.allclose(grads[2 * k + 1][m], layer.bias.grad, rtol=1e-4, atol=1e-7), (k, "bias")


def test_a_custom_activation_trains_through_autograd_in_the_layout_of_nn_linear():
    """A module that is not elementwise (a softmax over the units) sees (M, examples, units)."""
    module = nn.Softmax(dim=-1)
    assert activation_backward(module) is None
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(1, 30, 2, generator=gen), (torch.rand(1, 30, generator=gen) > 0.5).float()
    params = [torch.randn(1, 3, 2, generator=gen), torch.randn(1, 3, generator=gen),
              torch.randn(1, 1, 3, generator=gen), torch.randn(1, 1, generator=gen)]
    _, loss, grads = loss_and_grads(params, feature_major(module), None,
                                    x.transpose(1, 2).contiguous(), y)
    l1, l2 = nn.Linear(2, 3), nn.Linear(3, 1)
    with torch.no_grad():
        for p, q in zip((*l1.parameters(), *l2.parameters()), params):
            p.copy_(q[0])
    solo = F.binary_cross_entropy_with_logits(l2(module(l1(x[0]))).squeeze(1), y[0])
    solo.backward()
    assert torch.allclose(loss[0], solo)
    for g, p in zip(grads, (*l1.parameters(), *l2.parameters())):
        assert torch.allclose(g[0], p.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("optim", [
    ["optim=sgd", "optim.lr=0.3"], ["optim=momentum", "optim.momentum=0.9", "optim.weight_decay=0.01"],
    ["optim=adam", "optim.lr=0.01", "optim.weight_decay=0.001"]])
def test_the_stacked_optimizer_steps_as_torch_optim(optim):
    """Two members with their own hyper-parameters, five steps, against torch.optim on each."""
    cfgs = [compose_config(*optim), compose_config(*optim, "optim.lr=0.02")]
    gen = torch.Generator().manual_seed(1)
    params = [torch.randn(2, 3, 4, generator=gen), torch.randn(2, 3, generator=gen)]
    solo = [[nn.Parameter(p[m].clone()) for p in params] for m in range(2)]
    stacked = StackedOptimizer(cfgs, params)
    made = [torch.optim.Adam(s, lr=c.optim.lr, betas=tuple(c.optim.betas),
                             weight_decay=c.optim.weight_decay) if c.optim.name == "adam"
            else torch.optim.SGD(s, lr=c.optim.lr, momentum=c.optim.momentum,
                                 weight_decay=c.optim.weight_decay)
            for s, c in zip(solo, cfgs)]
    for _ in range(5):
        grads = [torch.randn(2, 3, 4, generator=gen), torch.randn(2, 3, generator=gen)]
        stacked.step(grads, None)
        for m, opt in enumerate(made):
            for p, g in zip(solo[m], grads):
                p.grad = g[m].clone()
            opt.step()
    for m in range(2):
        for p, q in zip(params, solo[m]):
            assert torch.allclose(p[m], q, rtol=1e-6, atol=1e-7)


def test_gradient_norms_and_metrics_equal_a_plain_pytorch_loop(tmp_path):
    """Mini-batches of 64 (4 steps an epoch) shuffled by the job's own generator: every
    step's gradient norms and every epoch's metrics against nn.Linear + torch.optim.SGD
    from the record's own init.pt and data.pt."""
    cfg = compose_config(*SMALL, "act=tanh", "trainer.batch_size=64", "trainer.epochs=6",
                         "optim=sgd", "optim.lr=0.2")
    run(cfg, tmp_path, quiet=True)
    data, init = torch.load(tmp_path / "data.pt"), torch.load(tmp_path / "checkpoints/init.pt")
    layers = [nn.Linear(2, 8), nn.Linear(8, 8), nn.Linear(8, 1)]
    names = [f"fc{k}.{kind}" for k in (1, 2, 3) for kind in ("weight", "bias")]
    params = [p for layer in layers for p in layer.parameters()]
    with torch.no_grad():
        for p, name in zip(params, names):
            p.copy_(init[name])
    opt = torch.optim.SGD(params, lr=0.2)

    def net(x):
        return layers[2](torch.tanh(layers[1](torch.tanh(layers[0](x))))).squeeze(1)

    shuffle = initlab.engine.generator(cfg.seed, initlab.engine.SHUFFLE_STREAM)
    norms, metrics = [], []
    X, y = data["X_train"], data["y_train"]
    for _ in range(6):
        total, correct = 0.0, 0.0
        for idx in torch.randperm(256, generator=shuffle).split(64):
            logits = net(X[idx])
            loss = F.binary_cross_entropy_with_logits(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            norms.append([p.grad.norm().item() for p in params])
            opt.step()
            total += loss.item() * 64
            correct += ((logits > 0) == (y[idx] > 0.5)).sum().item()
        with torch.no_grad():
            dev = net(data["X_dev"])
            metrics.append([total / 256, correct / 256,
                            F.binary_cross_entropy_with_logits(dev, data["y_dev"]).item(),
                            ((dev > 0) == (data["y_dev"] > 0.5)).float().mean().item()])
    recorded = [float(r[3]) for r in read_rows(tmp_path / "grad_norms.csv")]
    assert [r[2] for r in read_rows(tmp_path / "grad_norms.csv")][:6] == names
    assert torch.allclose(torch.tensor(recorded), torch.tensor(norms).flatten(), rtol=1e-4, atol=1e-7)
    rows = torch.tensor([[float(v) for v in r[1:]] for r in read_rows(tmp_path / "metrics.csv")])
    assert torch.allclose(rows, torch.tensor(metrics), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_activation_statistics_equal_a_direct_forward(tmp_path, act):
    """activations.csv at epoch 0 against the hidden layers computed from init.pt by hand;
    large weights so tanh saturates and ReLU zeros."""
    cfg = compose_config(*SMALL, f"act={act}", "init=normal", "init.std=2.0", "init.bias=-0.5",
                         "trainer.epochs=1")
    run(cfg, tmp_path, quiet=True)
    data, init = torch.load(tmp_path / "data.pt"), torch.load(tmp_path / "checkpoints/init.pt")
    f = torch.tanh if act == "tanh" else torch.relu
    h1 = f(data["X_train"] @ init["fc1.weight"].T + init["fc1.bias"])
    h2 = f(h1 @ init["fc2.weight"].T + init["fc2.bias"])
    rows = [r for r in read_rows(tmp_path / "activations.csv") if r[0] == "0"]
    for row, h in zip(rows, (h1, h2)):
        mean, std, frac_zero, frac_sat = map(float, row[2:])
        assert abs(mean - h.mean().item()) < 1e-5
        assert abs(std - h.std(unbiased=False).item()) < 1e-5
        assert abs(frac_zero - (h == 0).float().mean().item()) < 1e-6
        if act == "tanh":
            assert frac_sat == pytest.approx((h.abs() > 0.97).float().mean().item(), abs=1e-6)
            assert frac_sat > 0
        else:
            assert math.isnan(frac_sat) and frac_zero > 0


def test_a_nan_gradient_stops_the_fit_in_its_epoch_and_is_named_first(tmp_path, monkeypatch):
    """A NaN planted in step 5's gradient (epoch 2 of 4 steps an epoch): the member stops at
    the end of epoch 2, the gradient named as the cause, its norms recorded up to there."""
    original, calls = initlab.engine.loss_and_grads, []

    def poisoned(*args):
        logits, loss, grads = original(*args)
        calls.append(1)
        if len(calls) == 6:  # step 5
            grads[2] = grads[2].clone()
            grads[2][0, 0, 0] = math.nan
        return logits, loss, grads

    monkeypatch.setattr(initlab.engine, "loss_and_grads", poisoned)
    summary = run(compose_config(*SMALL, "trainer.batch_size=64", "trainer.epochs=4"), tmp_path,
                  quiet=True)
    assert (summary["status"], summary["epochs_run"], summary["steps_run"]) == ("diverged", 2, 8)
    assert summary["stop_reason"] == "non-finite gradient norms at epoch 2"
    norms = read_rows(tmp_path / "grad_norms.csv")
    assert len(norms) == 8 * 6 and norms[5 * 6 + 2][2] == "fc2.weight" and norms[5 * 6 + 2][3] == "nan"


# ------------------------------------------------------------------ signals and shards
def test_a_signal_stops_every_member_after_its_epoch_with_status_interrupted(tmp_path, monkeypatch):
    monkeypatch.setattr(initlab.engine, "PROGRESS_EVERY_S", 0.0)
    cfgs = [compose_config(*SMALL, f"seed={seed}", "trainer.epochs=20") for seed in (0, 1)]
    dirs = [tmp_path / "a", tmp_path / "b"]

    def progress(done: int, total: int, metrics) -> None:
        if done == 3:  # the signal lands while epoch 4 trains, as Ctrl-C would
            os.kill(os.getpid(), signal.SIGINT)

    summaries = train_group(cfgs, dirs, progress=progress)
    for summary, run_dir in zip(summaries, dirs):
        assert summary["status"] == "interrupted" and summary["signal"] == "SIGINT"
        assert summary["epochs_run"] == 4
        assert summary["stop_reason"] == "interrupted by SIGINT at epoch 4"
        assert len(read_rows(run_dir / "metrics.csv")) == 4
        assert {r[0] for r in read_rows(run_dir / "activations.csv")} == {"0", "4"}
        assert sorted(torch.load(run_dir / "checkpoints/epochs.pt")) == [0, 4]


def test_the_diagnosis_sees_the_record_read_back_from_disk(tmp_path, monkeypatch):
    """MemberRecord.finish builds the diagnosed record from memory: it must equal read_record's."""
    import initlab.diagnose
    from initlab.record import COLUMNS, read_record

    seen, diagnose = [], initlab.diagnose.diagnose

    def capture(record):
        seen.append(record)
        return diagnose(record)

    monkeypatch.setattr(initlab.diagnose, "diagnose", capture)
    common = ["act=lrelu", "optim=sgd", "trainer.epochs=50", "seed=0"]
    cfgs = [compose_config(*SMALL, *common, f"optim.lr={lr}") for lr in (0.1, 100)]
    dirs = [tmp_path / "a", tmp_path / "b"]
    summaries = train_group(cfgs, dirs)
    assert [s["status"] for s in summaries] == ["completed", "diverged"]
    for record, run_dir, summary in zip(seen, dirs, summaries):
        disk = read_record(run_dir)
        assert record.overrides == disk.overrides and record.config == disk.config
        for name in COLUMNS:
            mine, theirs = getattr(record, name[:-4]), getattr(disk, name[:-4])
            assert len(mine) == len(theirs), name
            for a, b in zip(mine, theirs):
                assert list(a) == list(b), name
                for column in a:
                    x, z = a[column], b[column]
                    if isinstance(x, float):
                        assert (math.isnan(x) and math.isnan(z)) or float(format(x, ".9g")) == z
                    else:
                        assert type(x) is type(z) and x == z, (name, column)
        disk.summary = summary
        assert [f.as_dict() for f in diagnose(disk)] == summary["diagnosis"]


def test_a_group_trained_in_shards_writes_what_one_process_writes(tmp_path, monkeypatch):
    """A CPU group split over 3 processes (SHARD_MIN_MEMBERS 2, 3 threads): byte for byte the
    files one process writes, the summaries back in member order, each from its own process."""
    cfgs = [compose_config(*SMALL, f"seed={seed}", "trainer.epochs=5") for seed in range(6)]
    records, pids = {}, {}
    for mode, minimum, threads in (("one", 10**9, 1), ("shards", 2, 3)):
        monkeypatch.setattr(initlab.engine, "SHARD_MIN_MEMBERS", minimum)
        dirs = [tmp_path / mode / str(i) for i in range(6)]
        done = []
        summaries = train_group(cfgs, dirs, threads=threads,
                                on_member_done=lambda i, s, done=done: done.append((i, s["seed"])))
        assert done == [(i, i) for i in range(6)]
        records[mode] = dirs
        pids[mode] = [s["process"]["pid"] for s in summaries]
    assert pids["one"] == [os.getpid()] * 6
    assert pids["shards"][:2] == [os.getpid()] * 2
    assert len({pids["shards"][2], pids["shards"][4], os.getpid()}) == 3
    for one, sharded in zip(records["one"], records["shards"]):
        assert_same_record(one, sharded)


def _full_disk() -> None:
    raise OSError(28, "No space left on device")


def _train_with_failing_records(tmp_path, monkeypatch, members: int, threads: int, done: list,
                                failures: dict) -> None:
    """train_group of ``members`` seeds in shards of 2, where finishing seed k's record first
    calls ``failures[k]``; ``done`` collects the jobs reported."""
    monkeypatch.setattr(initlab.engine, "SHARD_MIN_MEMBERS", 2)
    original = MemberRecord.finish

    def broken(self, *args):
        failures.get(self.cfg.seed, lambda: None)()
        return original(self, *args)

    monkeypatch.setattr(MemberRecord, "finish", broken)
    cfgs = [compose_config(*SMALL, f"seed={seed}", "trainer.epochs=2") for seed in range(members)]
    train_group(cfgs, [tmp_path / str(i) for i in range(members)], threads=threads,
                on_member_done=lambda i, s: done.append(i))


def test_a_member_whose_record_hits_a_full_disk_fails_alone_in_its_shard(tmp_path, monkeypatch):
    done = []
    _train_with_failing_records(tmp_path, monkeypatch, 6, 3, done, {2: _full_disk, 3: _full_disk})
    assert done == [0, 1, 2, 3, 4, 5]
    for i in done:
        summary = json.loads((tmp_path / str(i) / "summary.json").read_text())
        assert summary["status"] == ("failed" if i in (2, 3) else "completed")
        assert i not in (2, 3) or "No space left on device" in summary["error"]


def test_every_failing_shard_is_named_and_the_healthy_ones_finish(tmp_path, monkeypatch):
    def dies() -> None:
        os._exit(9)

    done = []
    torch.set_num_threads(3)
    with pytest.raises(initlab.shards.ShardError) as raised:
        _train_with_failing_records(tmp_path, monkeypatch, 8, 4, done,
                                    {2: _full_disk, 3: _full_disk, 6: dies, 7: dies})
    assert str(raised.value) == ("the process training jobs 6-7 failed before job 6's record: "
                                 "it ended (exit 9)")
    assert done == [0, 1, 2, 3, 4, 5]  # 2 and 3 failed alone, their shard went on
    assert torch.get_num_threads() == 3  # the shards' thread setting does not outlive them
    # A job its shard never finished still holds the rows streamed while it trained.
    assert len(read_rows(tmp_path / "6" / "metrics.csv")) == 2


def test_when_the_launchers_own_shard_fails_the_others_still_finish(tmp_path, monkeypatch):
    launcher, final_metrics = os.getpid(), initlab.engine.StackedGroup.final_metrics

    def fails_here(self):  # the whole shard's measurement, in the launcher's process only
        if os.getpid() == launcher:
            _full_disk()
        return final_metrics(self)

    monkeypatch.setattr(initlab.engine.StackedGroup, "final_metrics", fails_here)
    done = []
    with pytest.raises(OSError, match="No space left on device"):
        _train_with_failing_records(tmp_path, monkeypatch, 6, 3, done, {})
    assert done == [2, 3, 4, 5]


def test_one_signal_stops_every_shard_and_each_record_is_complete(tmp_path, monkeypatch):
    monkeypatch.setattr(initlab.engine, "SHARD_MIN_MEMBERS", 2)
    monkeypatch.setattr(initlab.engine, "PROGRESS_EVERY_S", 0.0)
    cfgs = [compose_config(*SMALL, f"seed={seed}", "trainer.epochs=400") for seed in range(4)]
    dirs = [tmp_path / str(i) for i in range(4)]
    sent = []

    def progress(done: int, total: int, metrics) -> None:
        if done >= 3 and not sent:  # the slowest shard is past epoch 3
            sent.append(done)
            os.kill(os.getpid(), signal.SIGINT)

    summaries = train_group(cfgs, dirs, threads=2, progress=progress)
    assert len({s["process"]["pid"] for s in summaries}) == 2
    for summary, run_dir in zip(summaries, dirs):
        epochs = summary["epochs_run"]
        assert summary["status"] == "interrupted" and summary["signal"] == "SIGINT"
        assert 3 <= epochs < 400
        assert summary["stop_reason"] == f"interrupted by SIGINT at epoch {epochs}"
        assert len(read_rows(run_dir / "metrics.csv")) == epochs
        assert max(torch.load(run_dir / "checkpoints/epochs.pt")) == epochs


# A group of 4 in two processes, training "forever", its records streamed at every log
# epoch; it says "ready" on stdout once every member has streamed 20 epochs.
STREAMING_GROUP = """
import sys
from pathlib import Path
import initlab.engine
from tests.conftest import compose_config
from tests.test_engine import SMALL

initlab.engine.SHARD_MIN_MEMBERS = 2
initlab.engine.PROGRESS_EVERY_S = 0.0
cfgs = [compose_config(*SMALL, f"seed={seed}", "trainer.epochs=1000000", "trainer.flush_every_s=0")
        for seed in range(4)]
dirs = [Path(sys.argv[1]) / str(i) for i in range(4)]

def progress(done, total, metrics):
    if done >= 30 and all(len((d / "metrics.csv").read_text().splitlines()) > 20 for d in dirs):
        print("ready", flush=True)

initlab.engine.train_group(cfgs, dirs, threads=2, progress=progress)
"""


def _streaming_group(tmp_path):
    group = subprocess.Popen([sys.executable, "-c", STREAMING_GROUP, str(tmp_path)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    assert group.stdout.readline().strip() == "ready"
    return group


@pytest.mark.slow
def test_kill_9_of_a_group_keeps_every_members_streamed_rows(tmp_path):
    """The launcher's process and its shard killed outright: each member's record holds its
    metric and gradient-norm rows up to its last flush and says `running` with a pid that is
    gone, which readers show as stopped."""
    from initlab.record import effective_status

    group = _streaming_group(tmp_path)
    shard = json.loads((tmp_path / "3" / "summary.json").read_text())["process"]["pid"]
    ended = os.pidfd_open(shard)  # readable once the shard (not our child) has exited
    os.kill(shard, signal.SIGKILL)
    group.kill()
    group.wait()
    assert select.select([ended], [], [], 120)[0], "the shard never ended"
    os.close(ended)
    for i in range(4):
        summary = json.loads((tmp_path / str(i) / "summary.json").read_text())
        metrics = read_rows(tmp_path / str(i) / "metrics.csv")
        assert summary["status"] == "running" and effective_status(summary) == "stopped"
        assert len(metrics) >= summary["epochs_run"] >= 20
        assert [int(r[0]) for r in metrics] == list(range(1, len(metrics) + 1))
        steps = {int(r[0]) for r in read_rows(tmp_path / str(i) / "grad_norms.csv")}
        assert steps == set(range(len(steps))) and len(steps) >= summary["epochs_run"]
        assert (tmp_path / str(i) / "checkpoints/init.pt").exists()


@pytest.mark.slow
def test_a_shard_whose_launcher_is_killed_completes_its_records(tmp_path):
    """kill -9 of the launcher's process: the shard it forked notices, stops after its epoch
    and completes its members' records (status interrupted, every row measured)."""
    group = _streaming_group(tmp_path)
    shard = json.loads((tmp_path / "3" / "summary.json").read_text())["process"]["pid"]
    ended = os.pidfd_open(shard)  # readable once the shard (not our child) has exited
    group.kill()
    group.wait()
    assert select.select([ended], [], [], 120)[0], "the shard never ended"
    os.close(ended)
    for i in (2, 3):
        done = json.loads((tmp_path / str(i) / "summary.json").read_text())
        epochs = done["epochs_run"]
        assert done["status"] == "interrupted" and done["signal"] is None
        assert done["stop_reason"] == f"interrupted by the end of its launcher process at epoch {epochs}"
        assert epochs >= 20 and len(read_rows(tmp_path / str(i) / "metrics.csv")) == epochs


def test_a_lean_record_keeps_every_table_and_the_diagnosis(tmp_path):
    """trainer.save_tensors=false: no data.pt, no checkpoints/, the same tables as the full
    record, and the same findings (the zero-init symmetry found from weights.csv alone)."""
    from initlab.report import render_run

    lean = ["init=zeros", "act=sigmoid", "model.depth=2", "model.width=5", "trainer.epochs=12"]
    full_dir, lean_dir = tmp_path / "full", tmp_path / "lean"
    full = run(compose_config(*SMALL, *lean), full_dir, quiet=True)
    alone = run(compose_config(*SMALL, *lean, "trainer.save_tensors=false"), lean_dir, quiet=True)
    assert (full_dir / "data.pt").exists() and (full_dir / "checkpoints").is_dir()
    assert not (lean_dir / "data.pt").exists() and not (lean_dir / "checkpoints").exists()
    assert sorted(p.name for p in lean_dir.glob("*.csv")) == sorted(p.name for p in full_dir.glob("*.csv"))
    codes = [f["code"] for f in full["diagnosis"]]
    assert "symmetric_weights" in codes and [f["code"] for f in alone["diagnosis"]] == codes
    drawn = {p.name for p in render_run(lean_dir, figures="full", tables="line")}
    assert "loss_accuracy.png" in drawn and "grad_norm_by_layer.png" in drawn
    assert not any("boundary" in name for name in drawn)


def test_zero_init_on_balanced_data_stays_exactly_at_its_saddle(tmp_path):
    """The textbook's zero-init net (2-5-1 sigmoid, 320/320 training labels): every gradient
    is exactly 0 at every step, so the loss stays ln 2 and the accuracy 50 %."""
    summary = run(compose_config("experiment=zero_init", "trainer.progress=false",
                                 "trainer.epochs=300"), tmp_path, quiet=True)
    y = torch.load(tmp_path / "data.pt")["y_train"]
    assert int(y.sum()) * 2 == len(y)
    assert {r[3] for r in read_rows(tmp_path / "grad_norms.csv")} == {"0"}
    assert summary["metrics"]["train"]["acc"] == 0.5
    assert summary["metrics"]["train"]["loss"] == pytest.approx(math.log(2), abs=1e-6)
