"""Work that must not explode with size: the symmetric-weights check at any width, log
epochs of a 10^9-epoch run, and the budget check that refuses what cannot fit."""

import math
import subprocess
import sys

import pytest
import torch

from initlab.budget import (
    FIXED_DISK_BYTES,
    MIN_REFUSED_BYTES,
    check_budget,
    estimate,
    log_epoch_count,
)
from initlab.config import MAX_SEED, ConfigError, validate
from initlab.diagnose import twins as diagnose
from initlab.diagnose.twins import duplicate_units as _duplicate_units
from initlab.recorders import spread_log_epochs
from tests.conftest import compose_config, initlab_cli

GB = 10**9


# ----------------------------------------------------------- symmetric-weights check
def duplicate_units_by_cdist(state, layer, next_layer, rtol):
    """The O(width²) original, kept as the independent reference."""
    incoming, bias = state[f"{layer}.weight"], state[f"{layer}.bias"][:, None]
    units = torch.cat((incoming, bias, state[f"{next_layer}.weight"].T), dim=1)
    size = units.abs().amax(dim=1)
    pair_size = torch.maximum(size[:, None], size[None, :])
    distance = torch.cdist(units, units, p=math.inf)
    twins = distance <= rtol * pair_size
    twins.fill_diagonal_(False)
    n_twins = int(twins.any(1).sum())
    relative = distance / pair_size.clamp_min(torch.finfo(units.dtype).tiny)
    spread = float(relative[twins].max()) if n_twins else 0.0
    return n_twins, units.shape[0], spread


def layer_state(units: torch.Tensor, n_in: int = 2) -> dict[str, torch.Tensor]:
    """fc1/fc2 weights whose hidden units are the rows of ``units`` (in | bias | out)."""
    return {"fc1.weight": units[:, :n_in], "fc1.bias": units[:, n_in],
            "fc2.weight": units[:, n_in + 1:].T.contiguous()}


def _random(width, d, seed=0):
    return torch.randn(width, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _perturbed(width, d, scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, d, generator=g, dtype=torch.float64).repeat(width, 1)
    return base * (1 + scale * (2 * torch.rand(width, d, generator=g, dtype=torch.float64) - 1))


def _with_twins(width, d):
    u = _random(width, d)
    if width < 64:
        u[-1] = u[0]
        return u
    u[10:20] = u[0]  # exact copies
    u[30:40] = u[1] * (1 + 3e-5)  # near copies within rtol=1e-4
    u[50] = u[2] * (1 + 5e-4)  # just outside
    u[60:63] = u[3] + 1e-5 * u[3].abs().amax()  # a shifted group
    return u


def _nan_units(width, d):
    u = torch.zeros(width, d, dtype=torch.float64)
    u[: width // 2, 0] = math.nan  # NaN units equal elsewhere: never twins
    return u


def _all_nan(width, d):
    return torch.full((width, d), math.nan, dtype=torch.float64)


def _two_clusters(width, d):
    u = _perturbed(width, d, 1e-5)
    u[width // 2:] = _perturbed(width - width // 2, d, 1e-5, seed=1) * 7
    return u


LAYERS = {
    "random": lambda w, d: _random(w, d),
    "zero init": lambda w, d: torch.zeros(w, d, dtype=torch.float64),
    "constant init": lambda w, d: torch.full((w, d), 0.3, dtype=torch.float64),
    "near-identical 1e-6": lambda w, d: _perturbed(w, d, 1e-6),
    "near-identical 1e-4 (on the edge)": lambda w, d: _perturbed(w, d, 1e-4),
    "near-identical 1e-3 (apart)": lambda w, d: _perturbed(w, d, 1e-3),
    "random with twins": _with_twins,
    "two near-identical clusters": _two_clusters,
    "NaN units": _nan_units,
    "all NaN": _all_nan,
    "tiny values": lambda w, d: _random(w, d) * 1e-300,
}


@pytest.fixture(params=["python", "all pairs", "projection"])
def search(request, monkeypatch):
    """The three ways _duplicate_units searches: every pair in Python floats (narrow
    layers, forced here on all), every pair in torch (small layers), or neighbours in
    projection order (what wide layers get; forced here on small ones)."""
    if request.param == "python":
        monkeypatch.setattr(diagnose, "TWIN_PYTHON_WORK", 1 << 40)
    else:
        monkeypatch.setattr(diagnose, "TWIN_PYTHON_WORK", 0)
    if request.param == "projection":
        monkeypatch.setattr(diagnose, "TWIN_ALL_PAIRS_WORK", 0)
    return request.param


@pytest.mark.parametrize("make", LAYERS.values(), ids=LAYERS.keys())
@pytest.mark.parametrize("width, d", [(1, 4), (2, 4), (300, 4), (200, 19), (64, 67)])
def test_duplicate_units_match_the_all_pairs_reference(search, make, width, d):
    state = layer_state(make(width, d))
    n, units, spread = _duplicate_units(state, "fc1", "fc2", 1e-4)
    n_ref, units_ref, spread_ref = duplicate_units_by_cdist(state, "fc1", "fc2", 1e-4)
    assert (n, units) == (n_ref, units_ref)
    assert spread == pytest.approx(spread_ref, rel=1e-12, abs=0)


@pytest.mark.parametrize("rtol", [1e-8, 1e-4, 0.01, 0.5, 1.0, 3.0])
def test_duplicate_units_match_the_reference_at_any_tolerance(search, rtol):
    u = _with_twins(200, 6)
    u[100:150] = _perturbed(50, 6, 0.2, seed=3)
    state = layer_state(u)
    n, _, spread = _duplicate_units(state, "fc1", "fc2", rtol)
    n_ref, _, spread_ref = duplicate_units_by_cdist(state, "fc1", "fc2", rtol)
    if search == "projection" and rtol >= 0.5:
        # What the neighbour cap can miss (documented): at such a tolerance every unit is in
        # every window, and twins more than TWIN_NEIGHBOURS apart are not compared. It never
        # invents a twin.
        assert 0.9 * n_ref <= n <= n_ref
        assert spread <= spread_ref
        return
    assert n == n_ref
    assert spread == pytest.approx(spread_ref, rel=1e-12, abs=0)


def test_a_unit_with_an_infinity_has_no_twin():
    # The reference called a unit holding inf a twin of every unit (inf <= rtol * inf);
    # such a layer is broken, like one with a NaN.
    u = _random(8, 4)
    u[0, 1] = u[1, 1] = math.inf
    u[5] = u[4]
    assert _duplicate_units(layer_state(u), "fc1", "fc2", 1e-4) == (2, 8, 0.0)


SCALE_CHECK = """
import resource, sys, torch
from initlab.diagnose import twins as diagnose
from initlab.diagnose.twins import duplicate_units as _duplicate_units
torch.set_num_threads(1)
torch.cdist = None  # the all-pairs matrix must not come back
w = 100_000
g = torch.Generator().manual_seed(0)
layers = {
    "random": torch.randn(w, 4, generator=g, dtype=torch.float64),
    "zero": torch.zeros(w, 4, dtype=torch.float64),
    "near": torch.randn(1, 4, generator=g, dtype=torch.float64)
            * (1 + 1e-6 * torch.randn(w, 4, generator=g, dtype=torch.float64)),
}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for name, u in layers.items():
    state = {"fc1.weight": u[:, :2], "fc1.bias": u[:, 2], "fc2.weight": u[:, 3:].T.contiguous()}
    n, units, spread = _duplicate_units(state, "fc1", "fc2", 1e-4)
    print(name, n, units)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print("peak_growth_kb", grown)
"""


@pytest.mark.slow
def test_duplicate_units_at_width_100000_take_little_memory():
    """No all-pairs matrix (torch.cdist is gone in the check): the inputs are 3.2 MB each,
    the all-pairs matrices were 80 GB each. (Its speed: bench/, not a test.)"""
    out = subprocess.run([sys.executable, "-c", SCALE_CHECK], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split("\n")
    results = {line.split()[0]: line.split()[1:] for line in out if line}
    assert results["random"][:2] == ["0", "100000"]
    assert results["zero"][:2] == ["100000", "100000"]
    assert results["near"][:2] == ["100000", "100000"]
    assert int(results["peak_growth_kb"][0]) < 300_000


# -------------------------------------------------------------------- log epochs
def spread_log_epochs_by_set(every, epochs, count):
    """The original: every log epoch listed in a set, kept as the reference."""
    log_epochs = sorted({0, *range(every, epochs + 1, every), epochs})
    if len(log_epochs) <= count:
        return log_epochs
    last = len(log_epochs) - 1
    return sorted({log_epochs[round(i * last / (count - 1))] for i in range(count)})


def test_spread_log_epochs_matches_the_listing_reference():
    combos = [(every, epochs, count) for every in (1, 2, 3, 5, 7, 20, 50, 64)
              for epochs in (*range(1, 60), 99, 100, 101, 200, 999, 1000, 1001, 4095)
              for count in (2, 3, 4, 5, 6, 7, 10, 64)]
    for combo in combos:
        assert spread_log_epochs(*combo) == spread_log_epochs_by_set(*combo), combo
        every, epochs, _ = combo
        assert log_epoch_count(every, epochs) == len(spread_log_epochs_by_set(every, epochs, 10**9))


def test_spread_log_epochs_of_a_billion_epochs_lists_none_of_them(monkeypatch):
    import builtins

    real_range = builtins.range

    def short_range(*args):  # a listing of the log epochs would need a range of 5e7
        assert len(real_range(*args)) < 1000, args
        return real_range(*args)

    monkeypatch.setattr(builtins, "range", short_range)
    epochs = spread_log_epochs(20, 10**9, 6)
    assert epochs == [0, 200_000_000, 400_000_000, 600_000_000, 800_000_000, 1_000_000_000]
    assert spread_log_epochs(7, 10**9 + 3, 6)[-1] == 10**9 + 3
    with pytest.raises(ValueError, match="count must be >= 2"):
        spread_log_epochs(1, 10, 1)


# ------------------------------------------------------------------------ budget
def _record_bytes(run_dir) -> int:
    return sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())


@pytest.mark.parametrize("overrides", [
    ("model.width=64", "trainer.epochs=50", "trainer.batch_size=64"),  # grad norms, units
    ("-cn", "smoke"),  # small enough for weights.csv
    ("optim=adam", "model.depth=6", "trainer.epochs=120", "trainer.log_every=3"),
])
def test_the_disk_estimate_is_within_a_factor_of_a_real_record(run_lab, overrides):
    config_name = "smoke" if overrides[0] == "-cn" else "config"
    overrides = overrides[2:] if config_name == "smoke" else overrides
    run_dir, summary = run_lab(*overrides, config_name=config_name)
    real = _record_bytes(run_dir)
    estimated = estimate(compose_config(*overrides, config_name=config_name)).disk_bytes
    # The estimate holds a fixed allowance for the report's figures, not drawn here.
    assert 0.5 * real < estimated - FIXED_DISK_BYTES < 2 * real, (real, estimated)


def _parameter_bytes(*overrides: str) -> float:
    return next(i.nbytes for i in estimate(compose_config(*overrides)).memory
                if "parameters x" in i.what)


def test_the_memory_estimate_counts_every_copy_of_the_parameters():
    params = 2 * 1000 + 1000 + 1000 * 1000 + 1000 + 1000 + 1  # fc1, fc2, fc3 with biases
    # model, grads, momentum; init/best/last checkpoints; too big for epoch checkpoints
    assert _parameter_bytes("model.width=1000") == 4 * params * 6
    assert _parameter_bytes("model.width=1000", "optim=adam") == 4 * params * 7
    assert _parameter_bytes("model.width=1000", "optim=sgd") == 4 * params * 5
    small = 2 * 16 + 16 + 16 * 16 + 16 + 16 + 1
    assert _parameter_bytes() == 4 * small * (6 + 6)  # + 6 epoch checkpoints
    assert estimate(compose_config()).memory_bytes < 1 * GB  # the interpreter dominates


def test_a_billion_epochs_are_refused_in_one_line():
    cfg = compose_config("trainer.epochs=1000000000")
    with pytest.raises(ConfigError) as info:
        check_budget(cfg, "/tmp/nowhere/run", memory=20 * GB, disk=52 * GB)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("trainer.epochs=1000000000")
    assert "free disk under /tmp" in message and "(available: 20 GB)" in message
    assert "gradient norms" in message and "lower trainer.epochs" in message
    # The gradient norms alone: 10^9 steps x 6 tensors x 40 bytes of CSV.
    grad_csv = next(i for i in estimate(cfg).disk if "grad_norms.csv" in i.what)
    assert grad_csv.nbytes == 10**9 * 6 * 40


def test_what_is_checked_is_only_what_can_be_read():
    cfg = compose_config("trainer.epochs=1000000000")
    with pytest.raises(ConfigError) as info:
        check_budget(cfg, "/tmp/run", memory=20 * GB, disk=None)
    assert "disk" not in str(info.value) and "in memory" in str(info.value)
    with pytest.raises(ConfigError) as info:
        check_budget(cfg, "/tmp/run", memory=None, disk=10 * GB)
    assert "in memory" not in str(info.value) and "grad_norms.csv" in str(info.value)
    check_budget(cfg, "/tmp/run", memory=None, disk=None)  # nothing known, nothing refused


TEXTBOOK_AND_BIG_RUNS = [
    (), ("-cn", "smoke"), ("experiment=zero_init",), ("experiment=dead_relu",),
    ("experiment=vanishing_gradient",), ("model.depth=500",),
    ("model.depth=2", "model.width=100000", "trainer.epochs=2"),
]


@pytest.mark.parametrize("overrides", TEXTBOOK_AND_BIG_RUNS, ids=" ".join)
def test_runs_that_fit_a_laptop_are_never_refused(overrides):
    config_name = "smoke" if overrides[:1] == ("-cn",) else "config"
    cfg = compose_config(*overrides[2 if config_name == "smoke" else 0:], config_name=config_name)
    check_budget(cfg, "/tmp/run", memory=4 * GB, disk=4 * GB)
    check_budget(cfg, "/tmp/run")  # and this machine


def test_a_small_run_is_left_to_fail_on_its_own_on_a_full_disk():
    cfg = compose_config()
    assert estimate(cfg).disk_bytes < MIN_REFUSED_BYTES
    check_budget(cfg, "/tmp/run", memory=1, disk=0)


@pytest.mark.slow
def test_the_cli_refuses_a_billion_epochs_in_one_line_without_a_folder(tmp_path):
    result = initlab_cli("run", "trainer.epochs=1000000000", f"hydra.run.dir={tmp_path}/run",
                         cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "trainer.epochs=1000000000" in lines[0], result.stderr
    assert "would record" in lines[0] or "in memory" in lines[0]
    assert f"under {tmp_path}" in lines[0]  # the nearest folder that exists
    assert not (tmp_path / "run").exists()


# -------------------------------------------------------------------- validation
def test_the_largest_seed_fits_every_stream():
    from initlab.engine import SHUFFLE_STREAM, generator, stream_seed

    validate(compose_config(f"seed={MAX_SEED}"))
    assert stream_seed(MAX_SEED, SHUFFLE_STREAM) <= 2**63 - 1
    assert stream_seed(MAX_SEED + 1, SHUFFLE_STREAM) > 2**63 - 1
    generator(MAX_SEED, SHUFFLE_STREAM)  # torch accepts it
    for seed in (MAX_SEED + 1, -1, 2**70):
        with pytest.raises(ConfigError, match=r"seed must be an integer in \[0, "):
            validate(compose_config(f"seed={seed}"))


@pytest.mark.parametrize("overrides", [
    ("init=normal", "init.std=1e30"), ("init=constant", "init.value=nan"),
    ("init.bias=nan",), ("init=normal", "init.mean=inf"), ("init=uniform", "init.low=-1e30"),
])
def test_non_finite_starting_values_are_experiments_not_errors(overrides):
    validate(compose_config(*overrides))


@pytest.mark.parametrize("override, key", [
    ("init.low=-inf", "init.low"), ("init.high=inf", "init.high"), ("init.low=nan", "init.low"),
])
def test_uniform_bounds_must_be_finite(override, key):
    with pytest.raises(ConfigError, match=f"^{key} must be a finite number"):
        validate(compose_config("init=uniform", override))


def test_settings_past_the_machine_are_refused_before_torch_sees_them():
    from initlab.budget import MAX_DEPTH, check_machine, cores

    check_machine(compose_config(f"trainer.threads={cores()}", f"model.depth={MAX_DEPTH}"))
    for overrides, message in (([f"trainer.threads={cores() + 1}", "model.depth=3"],
                                f"more than the {cores()} CPU cores here"),
                               (["trainer.threads=1", "model.depth=100000"],
                                f"beyond the {MAX_DEPTH} layers")):
        with pytest.raises(ConfigError, match=message):
            check_budget(compose_config(*overrides), "/tmp/run", memory=None, disk=None)


def test_a_stack_holds_only_the_members_that_fit_in_memory():
    from hydra_plugins.initlab_batched_launcher._core import grouping_line
    from initlab.budget import FIT_FRACTION, FIXED_MEMORY_BYTES, members_that_fit

    cfg = compose_config("model.width=512")
    each = estimate(cfg).memory_bytes - FIXED_MEMORY_BYTES
    memory = int((FIXED_MEMORY_BYTES + 3.5 * each) / FIT_FRACTION)
    assert members_that_fit(cfg, memory) == 3
    assert members_that_fit(cfg, None) is None  # unknown: no bound
    assert members_that_fit(cfg, 1) == 1  # one member is the per-job check's to refuse
    assert grouping_line(4096, [4096], 1366, 3, 0, 0, (), True) == (
        "4096 jobs → 1 group of 4096, trained in 1366 chunks (down to 3 members: what fits in memory)")
