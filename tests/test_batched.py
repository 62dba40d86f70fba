"""The stacked engine (initlab.batched) against the single run: member k of a group is the
same experiment as job k run alone by initlab.run.run, file by file, within float32
rounding (|a - b| <= 1e-6 + 1e-4 |b|; the summation order differs, nothing else)."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from initlab.batched import group_key, train_group
from initlab.record import COLUMNS, TEXT_COLUMNS
from initlab.run import run
from tests.conftest import compose_config

ATOL, RTOL = 1e-6, 1e-4
# Compared value by value; activation_hists.csv only by shape and total counts, since an
# activation that moves by one rounding step may cross a bin edge.
COMPARED_CSVS = ("metrics.csv", "grad_norms.csv", "activations.csv", "units.csv",
                 "weight_stats.csv", "weights.csv")
CHECKPOINTS = ("checkpoints/init.pt", "checkpoints/best.pt", "checkpoints/last.pt")
SMALL = ("data.n_samples=400", "data.n_train=256", "data.n_dev=72", "data.n_test=72",
         "model.width=8", "trainer.log_every=10", "trainer.progress=false")


def close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= ATOL + RTOL * abs(b)


class Gap:
    """The largest relative gap seen, for the report."""

    worst = 0.0

    @classmethod
    def note(cls, a: float, b: float) -> None:
        if math.isfinite(a) and math.isfinite(b):
            cls.worst = max(cls.worst, abs(a - b) / (ATOL / RTOL + abs(b)))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def assert_csv_agrees(batched: Path, solo: Path, name: str) -> None:
    assert (batched / name).exists() == (solo / name).exists(), name
    if not (solo / name).exists():
        return
    rows_b, rows_s = read_csv(batched / name), read_csv(solo / name)
    assert len(rows_b) == len(rows_s), f"{name}: {len(rows_b)} rows vs {len(rows_s)}"
    for line, (rb, rs) in enumerate(zip(rows_b, rows_s), start=2):
        for column in COLUMNS[name]:
            if column in TEXT_COLUMNS or column in ("epoch", "step", "index", "unit", "bin"):
                assert rb[column] == rs[column], f"{name}:{line} {column}"
            else:
                a, b = float(rb[column]), float(rs[column])
                Gap.note(a, b)
                assert close(a, b), f"{name}:{line} {column}: batched {a} vs solo {b}"


def assert_tensors_agree(a: dict, b: dict, what: str) -> None:
    assert list(a) == list(b), what
    for key in a:
        assert a[key].shape == b[key].shape, f"{what} {key}"
        diff = (a[key] - b[key]).abs()
        finite = torch.isfinite(b[key])
        bound = ATOL + RTOL * b[key].abs()
        assert torch.equal(torch.isfinite(a[key]), finite), f"{what} {key}: non-finite differ"
        assert bool((diff[finite] <= bound[finite]).all()), f"{what} {key}: {diff.max()}"
        if finite.any():
            Gap.worst = max(Gap.worst, float((diff[finite] / (ATOL / RTOL + b[key].abs()[finite])).max()))


def assert_record_agrees(batched: Path, solo: Path) -> None:
    sb = json.loads((batched / "summary.json").read_text())
    ss = json.loads((solo / "summary.json").read_text())
    assert sb.pop("launcher") == "batched"
    assert list(sb) == list(ss)  # the same schema, in the same order
    for key in ("status", "epochs_run", "steps_run", "best_epoch", "stop_reason", "seed",
                "param_shapes", "n_params", "config", "signal"):
        assert sb[key] == ss[key], key
    assert [f["code"] for f in sb["diagnosis"]] == [f["code"] for f in ss["diagnosis"]]
    for split in ("train", "dev", "test"):
        for k in ("loss", "acc"):
            assert close(sb["metrics"][split][k], ss["metrics"][split][k]), (split, k)
    files_b = {p.relative_to(batched) for p in batched.rglob("*") if p.is_file()}
    files_s = {p.relative_to(solo) for p in solo.rglob("*") if p.is_file()}
    assert files_b == files_s
    for name in COMPARED_CSVS:
        assert_csv_agrees(batched, solo, name)
    hists_b, hists_s = read_csv(batched / "activation_hists.csv"), read_csv(solo / "activation_hists.csv")
    assert [(r["epoch"], r["layer"], r["bin"]) for r in hists_b] == \
           [(r["epoch"], r["layer"], r["bin"]) for r in hists_s]
    assert sum(float(r["count"]) for r in hists_b) == sum(float(r["count"]) for r in hists_s)
    for name in CHECKPOINTS:
        assert_tensors_agree(torch.load(batched / name), torch.load(solo / name), name)
    epochs_b = torch.load(batched / "checkpoints/epochs.pt")
    epochs_s = torch.load(solo / "checkpoints/epochs.pt")
    assert list(epochs_b) == list(epochs_s)
    for epoch in epochs_s:
        assert_tensors_agree(epochs_b[epoch], epochs_s[epoch], f"epochs.pt[{epoch}]")
    assert_tensors_agree(torch.load(batched / "data.pt"), torch.load(solo / "data.pt"), "data.pt")


def both_ways(tmp: Path, jobs: list[list[str]]) -> list[tuple[Path, Path]]:
    """Train ``jobs`` (override lists) stacked, group by group, and one by one."""
    torch.set_num_threads(1)
    cfgs = [compose_config(*SMALL, *overrides) for overrides in jobs]
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(group_key(cfg), []).append(i)
    pairs = [(tmp / f"batched{i}", tmp / f"solo{i}") for i in range(len(cfgs))]
    for members in groups.values():
        for i in members:
            pairs[i][0].mkdir()
        done: list[int] = []
        summaries = train_group([cfgs[i] for i in members], [pairs[i][0] for i in members],
                                on_member_done=lambda k, s, done=done: done.append(k))
        assert done == list(range(len(members)))
        assert all(s["launcher"] == "batched" for s in summaries)
    for cfg, (_, solo) in zip(cfgs, pairs):
        run(cfg, solo, quiet=True)
    return pairs


# Learning rates up to 0.15: at 0.3 with momentum 0.9 the dynamics amplify rounding past
# the tolerance within 240 steps, alone as much as stacked (one solo run against itself with
# one initial weight moved by one ulp: 3e-4 relative on a gradient norm by epoch 30).
MIXED = [
    [f"act={act}", f"seed={seed}", f"init={init}", f"optim.lr={lr}", "trainer.batch_size=32",
     "optim.momentum=0.9", "trainer.epochs=30"]
    for act in ("relu", "tanh")
    for seed in (0, 1, 2)
    for init in ("kaiming_normal", "xavier_uniform")
    for lr in (0.05, 0.15)
]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return both_ways(tmp_path_factory.mktemp("mixed"), MIXED)


def test_a_mixed_sweep_forms_one_group_per_activation():
    keys = {group_key(compose_config(*SMALL, *overrides)) for overrides in MIXED}
    assert len(keys) == 2


@pytest.mark.parametrize("job", range(len(MIXED)))
def test_every_member_of_a_mixed_group_equals_its_single_run(mixed, job):
    assert_record_agrees(*mixed[job])


def test_the_largest_gap_is_reported(mixed):
    for pair in mixed:
        assert_record_agrees(*pair)
    print(f"largest relative gap: {Gap.worst:.2e} of the tolerance's 1e-4")


def test_members_differing_in_decay_noise_bias_and_adam_equal_their_single_runs(tmp_path):
    jobs = [["optim=adam", f"optim.lr={lr}", f"optim.weight_decay={wd}", f"data.noise={noise}",
             f"init.bias={bias}", "seed=3", "trainer.epochs=15", "trainer.batch_size=64"]
            for lr, wd, noise, bias in ((0.01, 0.0, 0.2, 0.0), (0.05, 0.01, 0.1, 0.1))]
    jobs += [["optim=momentum", f"optim.momentum={mom}", f"optim.weight_decay={wd}", "seed=4",
              "trainer.epochs=15"] for mom, wd in ((0.0, 0.0), (0.9, 0.001), (0.5, 0.0))]
    for pair in both_ways(tmp_path, jobs):
        assert_record_agrees(*pair)


def test_a_diverging_member_stops_alone_and_its_record_equals_its_single_run(tmp_path):
    common = ["act=lrelu", "optim=sgd", "trainer.epochs=50"]
    jobs = [[*common, "optim.lr=0.1", "seed=0"], [*common, "optim.lr=100", "seed=0"],
            [*common, "optim.lr=0.5", "seed=1"]]
    pairs = both_ways(tmp_path, jobs)
    for pair in pairs:
        assert_record_agrees(*pair)
    statuses = [json.loads((b / "summary.json").read_text()) for b, _ in pairs]
    assert [s["status"] for s in statuses] == ["completed", "diverged", "completed"]
    assert statuses[1]["epochs_run"] < 50
    assert [s["epochs_run"] for s in statuses[::2]] == [50, 50]


def test_configs_of_different_groups_are_refused(tmp_path):
    cfgs = [compose_config(*SMALL, "act=relu"), compose_config(*SMALL, "act=tanh")]
    with pytest.raises(ValueError, match="group keys"):
        train_group(cfgs, [tmp_path / "a", tmp_path / "b"])


def test_a_signal_stops_every_member_after_its_epoch_with_status_interrupted(tmp_path, monkeypatch):
    import os
    import signal

    import initlab.batched

    monkeypatch.setattr(initlab.batched, "PROGRESS_EVERY_S", 0.0)
    cfgs = [compose_config(*SMALL, f"seed={seed}", "trainer.epochs=20") for seed in (0, 1)]
    dirs = [tmp_path / "a", tmp_path / "b"]

    def progress(done: int, total: int) -> None:
        if done == 3:  # the signal lands while epoch 4 trains, as Ctrl-C would
            os.kill(os.getpid(), signal.SIGINT)

    summaries = train_group(cfgs, dirs, progress=progress)
    for summary, run_dir in zip(summaries, dirs):
        assert summary["status"] == "interrupted"
        assert summary["signal"] == "SIGINT"
        assert summary["epochs_run"] == 4
        assert summary["stop_reason"] == "interrupted by SIGINT at epoch 4"
        assert len(read_csv(run_dir / "metrics.csv")) == 4
        assert {r["epoch"] for r in read_csv(run_dir / "activations.csv")} == {"0", "4"}
        assert sorted(torch.load(run_dir / "checkpoints/epochs.pt")) == [0, 4]


def _same(a, b) -> bool:
    """Equal values, NaN equal to NaN, and the same Python types; a float in memory as the
    record writes it (9 significant digits: a float32 reads back as itself)."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return float(format(a, ".9g")) == b
    return type(a) is type(b) and a == b


def test_the_diagnosis_sees_the_record_read_back_from_disk(tmp_path, monkeypatch):
    """train_group builds the diagnosed record from memory: it must equal read_record's."""
    import initlab.batched
    from initlab.diagnose import diagnose
    from initlab.record import read_record

    seen = []

    def capture(record):
        seen.append(record)
        return diagnose(record)

    monkeypatch.setattr(initlab.batched, "diagnose", capture)
    common = ["act=lrelu", "optim=sgd", "trainer.epochs=50"]
    cfgs = [compose_config(*SMALL, *common, f"optim.lr={lr}", "seed=0") for lr in (0.1, 100)]
    dirs = [tmp_path / "a", tmp_path / "b"]
    summaries = train_group(cfgs, dirs)
    assert [s["status"] for s in summaries] == ["completed", "diverged"]
    for record, run_dir, summary in zip(seen, dirs, summaries):
        disk = read_record(run_dir)
        assert record.run_dir == disk.run_dir and record.overrides == disk.overrides
        assert record.config == disk.config
        for name in COLUMNS:
            table = name.removesuffix(".csv")
            mine, theirs = getattr(record, table), getattr(disk, table)
            assert len(mine) == len(theirs), name
            for a, b in zip(mine, theirs):
                assert list(a) == list(b) and all(_same(a[c], b[c]) for c in a), (name, a, b)
        for name in ("init", "best", "last"):
            assert_tensors_agree(record.checkpoint(name), disk.checkpoint(name), name)
        disk.summary = summary
        assert [f.as_dict() for f in diagnose(disk)] == summary["diagnosis"]


def _files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file()}


def _timeless(summary: dict) -> dict:
    """A summary less what says when and by which process it was written."""
    return {k: v for k, v in summary.items() if k not in ("timing", "process", "updated")}


def _shards(monkeypatch, minimum: int) -> None:
    import initlab.batched

    monkeypatch.setattr(initlab.batched, "SHARD_MIN_MEMBERS", minimum)


def test_a_group_trained_in_shards_writes_what_one_process_writes(tmp_path, monkeypatch):
    """A CPU group split over 3 processes (SHARD_MIN_MEMBERS 2, 3 threads), each training
    2 members as its own stacked model: byte for byte the files one process writes, the
    summaries back in member order (timing and pid aside), each from its own process."""
    import os

    cfgs = [compose_config(*SMALL, f"seed={seed}", "trainer.epochs=5") for seed in range(6)]
    records, pids = {}, {}
    for mode, minimum, threads in (("one", 10**9, 1), ("shards", 2, 3)):
        _shards(monkeypatch, minimum)
        dirs = [tmp_path / mode / str(i) for i in range(6)]
        done = []
        summaries = train_group(cfgs, dirs, threads=threads,
                                on_member_done=lambda i, s, done=done: done.append((i, s["seed"])))
        assert done == [(i, i) for i in range(6)]
        records[mode] = [_timeless(s) for s in summaries], [_files(d) for d in dirs]
        pids[mode] = [s["process"]["pid"] for s in summaries]
    assert pids["one"] == [os.getpid()] * 6
    assert pids["shards"][:2] == [os.getpid()] * 2
    assert len({pids["shards"][2], pids["shards"][4], os.getpid()}) == 3
    assert pids["shards"][3] == pids["shards"][2] and pids["shards"][5] == pids["shards"][4]
    assert records["shards"][0] == records["one"][0]
    for one, sharded in zip(records["one"][1], records["shards"][1]):
        assert set(one) == set(sharded)
        for name in one:
            if name == "summary.json":
                assert _timeless(json.loads(one[name])) == _timeless(json.loads(sharded[name]))
            else:
                assert one[name] == sharded[name], name


def _full_disk() -> None:
    raise OSError(28, "No space left on device")


def _train_with_failing_records(tmp_path, monkeypatch, members: int, threads: int, done: list,
                                failures: dict) -> None:
    """train_group of ``members`` seeds in shards of 2 (``threads`` of them at most), where
    writing seed k's record first calls ``failures[k]``; ``done`` collects the jobs reported."""
    import initlab.batched

    _shards(monkeypatch, 2)
    original = initlab.batched._write_member

    def broken(group, i, member, *args):
        failures.get(member.cfg.seed, lambda: None)()
        return original(group, i, member, *args)

    monkeypatch.setattr(initlab.batched, "_write_member", broken)
    cfgs = [compose_config(*SMALL, f"seed={seed}", "trainer.epochs=2") for seed in range(members)]
    train_group(cfgs, [tmp_path / str(i) for i in range(members)], threads=threads,
                on_member_done=lambda i, s: done.append(i))


def test_a_failing_shard_fails_only_the_jobs_it_had_not_finished(tmp_path, monkeypatch):
    """The middle one of 3 shards dies on its first record (a full disk): every other job's
    record is complete and reported, in order; then one line says which jobs failed."""
    import initlab.batched

    done = []
    with pytest.raises(initlab.batched.ShardError,
                       match=r"^the process training jobs 2-3 failed before job 2's record: "
                             r"OSError: \[Errno 28\] No space left on device$"):
        _train_with_failing_records(tmp_path, monkeypatch, 6, 3, done, {2: _full_disk, 3: _full_disk})
    assert done == [0, 1, 4, 5]
    for i in done:
        assert json.loads((tmp_path / str(i) / "summary.json").read_text())["status"] == "completed"


def test_every_failing_shard_is_named_and_the_healthy_ones_finish(tmp_path, monkeypatch):
    """4 shards of 2 jobs: the second fails on a full disk, the fourth dies outright
    (os._exit, no word): the first and third finish and are reported, in order, and one
    line names both failures, each with its own reason."""
    import os

    import initlab.batched

    def dies() -> None:
        os._exit(9)

    done = []
    torch.set_num_threads(3)
    with pytest.raises(initlab.batched.ShardError) as raised:
        _train_with_failing_records(tmp_path, monkeypatch, 8, 4, done,
                                    {2: _full_disk, 3: _full_disk, 6: dies, 7: dies})
    assert str(raised.value) == (
        "the process training jobs 2-3 failed before job 2's record: OSError: [Errno 28] No "
        "space left on device; the process training jobs 6-7 failed before job 6's record: "
        "it ended (exit 9)")
    assert done == [0, 1, 4, 5]
    assert torch.get_num_threads() == 3  # the shards' thread setting does not outlive them


def test_when_the_launchers_own_shard_fails_the_others_still_finish(tmp_path, monkeypatch):
    """The first shard is this process's: its error is raised as it is (the launcher fails
    the jobs it had not finished), but only after the other shards' records are complete
    and reported."""
    done = []
    with pytest.raises(OSError, match="No space left on device"):
        _train_with_failing_records(tmp_path, monkeypatch, 6, 3, done, {0: _full_disk})
    assert done == [2, 3, 4, 5]
    for i in done:
        assert json.loads((tmp_path / str(i) / "summary.json").read_text())["status"] == "completed"


def test_one_signal_stops_every_shard_and_each_record_is_complete(tmp_path, monkeypatch):
    """Ctrl-C reaches the launcher's process: the shards stop too (each after its own
    epoch), every record ends there with status interrupted, and nothing is lost."""
    import os
    import signal

    import initlab.batched

    _shards(monkeypatch, 2)
    monkeypatch.setattr(initlab.batched, "PROGRESS_EVERY_S", 0.0)
    cfgs = [compose_config(*SMALL, f"seed={seed}", "trainer.epochs=400") for seed in range(4)]
    dirs = [tmp_path / str(i) for i in range(4)]
    sent = []

    def progress(done: int, total: int) -> None:
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
        assert len(read_csv(run_dir / "metrics.csv")) == epochs
        assert max(torch.load(run_dir / "checkpoints/epochs.pt")) == epochs


SHARDED_GROUP = """
import sys
import initlab.batched
from tests.conftest import compose_config
from tests.test_batched import SMALL

initlab.batched.SHARD_MIN_MEMBERS = 2
cfgs = [compose_config(*SMALL, f"seed={seed}", "trainer.epochs=1000000") for seed in range(4)]
initlab.batched.train_group(cfgs, [f"{sys.argv[1]}/{i}" for i in range(4)], threads=2)
"""


def test_a_shard_whose_launcher_is_killed_completes_its_records(tmp_path):
    """kill -9 of the launcher's process: the shard it forked notices, stops after its
    epoch and completes its members' records (status interrupted, every row measured)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    parent = subprocess.Popen([sys.executable, "-c", SHARDED_GROUP, str(tmp_path)], cwd=root)
    summary = tmp_path / "3" / "summary.json"
    deadline = time.monotonic() + 60
    while not summary.exists() and time.monotonic() < deadline and parent.poll() is None:
        time.sleep(0.05)
    assert summary.exists(), "the shard never started"
    shard = json.loads(summary.read_text())["process"]["pid"]
    assert shard != parent.pid
    time.sleep(0.5)  # a few epochs
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    while time.monotonic() < deadline:
        try:
            os.kill(shard, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    for i in (2, 3):
        done = json.loads((tmp_path / str(i) / "summary.json").read_text())
        epochs = done["epochs_run"]
        assert done["status"] == "interrupted" and done["signal"] is None
        assert done["stop_reason"] == f"interrupted by the end of its launcher process at epoch {epochs}"
        assert epochs >= 1 and len(read_csv(tmp_path / str(i) / "metrics.csv")) == epochs


def test_a_lean_record_keeps_every_table_and_the_diagnosis_single_or_batched(tmp_path):
    """trainer.save_tensors=false: no data.pt, no checkpoints/, the same tables as the full
    record, and the same findings (the zero-init symmetry found from weights.csv alone);
    the report draws what needs no tensor."""
    from initlab.report import render_run

    lean = ["init=zeros", "act=sigmoid", "model.depth=2", "model.width=5", "trainer.epochs=12"]
    full_dir, lean_dir, stacked_dir = tmp_path / "full", tmp_path / "lean", tmp_path / "stacked"
    full = run(compose_config(*SMALL, *lean), full_dir, quiet=True)
    alone = run(compose_config(*SMALL, *lean, "trainer.save_tensors=false"), lean_dir, quiet=True)
    [stacked] = train_group([compose_config(*SMALL, *lean, "trainer.save_tensors=false")],
                            [stacked_dir])
    tables = sorted(p.name for p in full_dir.glob("*.csv"))
    assert (full_dir / "data.pt").exists() and (full_dir / "checkpoints").is_dir()
    for run_dir in (lean_dir, stacked_dir):
        assert not (run_dir / "data.pt").exists() and not (run_dir / "checkpoints").exists()
        assert sorted(p.name for p in run_dir.glob("*.csv")) == tables
    codes = [f["code"] for f in full["diagnosis"]]
    assert "symmetric_weights" in codes
    assert [f["code"] for f in alone["diagnosis"]] == codes
    assert [f["code"] for f in stacked["diagnosis"]] == codes
    drawn = {p.name for p in render_run(lean_dir, figures="full", tables="line")}
    assert "loss_accuracy.png" in drawn and "grad_norm_by_layer.png" in drawn
    assert not any("boundary" in name for name in drawn)


@pytest.mark.parametrize("act_name", ["sigmoid", "tanh", "relu", "lrelu", "elu", "selu", "gelu",
                                      "silu", "identity"])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_the_hand_written_backward_equals_autograd(act_name, depth):
    """The engine's own backward (initlab.batched._loss_and_grads) against plain autograd
    through nn.Linear layers of each member, every activation, a 1-, 2- and 4-layer net."""
    from initlab.batched import _loss_and_grads
    from initlab.model import activation_backward, make_activation

    act = make_activation(compose_config(f"act={act_name}").act)
    backward = activation_backward(act)
    assert backward is not None
    gen = torch.Generator().manual_seed(depth)
    members, n, widths = 3, 50, [2] + [4] * (depth - 1) + [1]
    x = torch.randn(members, n, 2, generator=gen)
    y = (torch.rand(members, n, generator=gen) > 0.5).float()
    params = []
    for fan_in, fan_out in zip(widths, widths[1:]):
        params += [torch.randn(members, fan_out, fan_in, generator=gen),
                   torch.randn(members, fan_out, generator=gen) * 0.5]
    logits, loss, grads = _loss_and_grads(params, act, backward, x.transpose(1, 2).contiguous(), y)
    for m in range(members):
        layers = [torch.nn.Linear(i, o) for i, o in zip(widths, widths[1:])]
        with torch.no_grad():
            for k, layer in enumerate(layers):
                layer.weight.copy_(params[2 * k][m])
                layer.bias.copy_(params[2 * k + 1][m])
        h = x[m]
        for layer in layers[:-1]:
            h = act(layer(h))
        solo_logits = layers[-1](h).squeeze(1)
        solo_loss = torch.nn.functional.binary_cross_entropy_with_logits(solo_logits, y[m])
        solo_loss.backward()
        assert torch.allclose(logits[m], solo_logits, rtol=1e-5, atol=1e-6)
        assert torch.allclose(loss[m], solo_loss, rtol=1e-5, atol=1e-7)
        for k, layer in enumerate(layers):
            assert torch.allclose(grads[2 * k][m], layer.weight.grad, rtol=1e-4, atol=1e-7), (k, "weight")
            assert torch.allclose(grads[2 * k + 1][m], layer.bias.grad, rtol=1e-4, atol=1e-7), (k, "bias")
