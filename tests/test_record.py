"""The run record contract, determinism, and the data it was trained on."""

import csv
import json
import math
import random
import struct

import pytest
import torch

from initlab.record import COLUMNS


def header(path):
    with open(path) as f:
        return tuple(next(csv.reader(f)))


def test_smoke_run_writes_the_complete_record(run_lab):
    run_dir, summary = run_lab(config_name="smoke")
    assert summary == json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["seed"] == 0 and summary["epochs_run"] == 20 and summary["device"] == "cpu"
    assert 1 <= summary["best_epoch"] <= 20
    assert {"train_s", "record_s", "total_s"} <= set(summary["timing"])
    assert summary["timing"]["train_s"] < summary["timing"]["total_s"]
    assert {"torch", "hydra", "omegaconf"} <= set(summary["versions"])
    for split in ("train", "dev", "test"):
        assert set(summary["metrics"][split]) == {"loss", "acc"}
    for name, columns in COLUMNS.items():
        assert header(run_dir / name) == columns, name
    with open(run_dir / "grad_norms.csv") as f:
        rows = list(csv.DictReader(f))
    params = summary["param_shapes"]
    assert len(rows) == 20 * len(params)  # full batch: one step per epoch, every parameter
    assert rows[0]["step"] == "0" and rows[0]["epoch"] == "1" and rows[0]["param"] == "fc1.weight"
    for name in ("init", "best", "last"):
        state = torch.load(run_dir / "checkpoints" / f"{name}.pt", weights_only=True)
        assert {k: list(v.shape) for k, v in state.items()} == params
    data = torch.load(run_dir / "data.pt", weights_only=True)
    assert {k: tuple(v.shape) for k, v in data.items()} == {
        "X_train": (120, 2), "y_train": (120,), "X_dev": (40, 2), "y_dev": (40,),
        "X_test": (40, 2), "y_test": (40,)}
    assert all(v.dtype == torch.float32 for v in data.values())
    # The record is complete before anything is drawn: run() draws nothing.
    assert not (run_dir / "figures").exists() and not (run_dir / "tables").exists()
    assert [d["code"] for d in summary["diagnosis"]] == []  # stored by the run itself
    assert summary["process"]["pid"] > 0 and summary["epochs_run"] == 20
    with open(run_dir / "activations.csv") as f:
        epochs = sorted({int(r["epoch"]) for r in csv.DictReader(f)})
    assert epochs == [0, 5, 10, 15, 20]  # init, every log_every=5 epochs


def test_init_checkpoint_is_the_state_before_any_step(run_lab):
    run_dir, _ = run_lab("init=normal", "init.std=0.5", "init.bias=0.25", config_name="smoke")
    init = torch.load(run_dir / "checkpoints" / "init.pt", weights_only=True)
    assert all(torch.all(v == 0.25) for k, v in init.items() if k.endswith("bias"))
    assert init["fc1.weight"].std().item() == pytest.approx(0.5, rel=0.5)


def test_same_config_and_seed_give_identical_records(run_lab):
    a, _ = run_lab("trainer.batch_size=32", config_name="smoke")
    b, _ = run_lab("trainer.batch_size=32", config_name="smoke")
    c, _ = run_lab("trainer.batch_size=32", "seed=1", config_name="smoke")
    for name in ("metrics.csv", "grad_norms.csv", "activations.csv", "weights.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "metrics.csv").read_bytes() != (c / "metrics.csv").read_bytes()


def test_moons_follow_the_textbook_formula(cfg_factory):
    from initlab.data import make_splits

    cfg = cfg_factory("data.noise=0", "data.shuffle=false")
    s = make_splits(cfg.data, 0)
    X = torch.cat([s.X_train, s.X_dev, s.X_test])
    y = torch.cat([s.y_train, s.y_dev, s.y_test])
    assert (s.X_train.shape[0], s.X_dev.shape[0], s.X_test.shape[0]) == (640, 160, 200)
    t = torch.linspace(0, math.pi, 500)
    assert torch.allclose(X[:500], torch.stack([torch.cos(t), torch.sin(t)], 1), atol=1e-6)
    assert torch.allclose(X[500:], torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1), atol=1e-6)
    assert torch.equal(y, torch.cat([torch.zeros(500), torch.ones(500)]))
    noisy = make_splits(cfg_factory().data, 0)
    assert 0.4 < noisy.y_train.mean().item() < 0.6  # shuffled: both moons in train


@pytest.mark.parametrize("name", ["circles", "xor"])
def test_other_datasets_are_balanced_and_seeded(cfg_factory, name):
    from initlab.data import make_splits

    cfg = cfg_factory(f"data={name}")
    a, b = make_splits(cfg.data, 3), make_splits(cfg.data, 3)
    assert torch.equal(a.X_train, b.X_train)
    assert 0.35 < a.y_train.mean().item() < 0.65


def test_default_run_is_healthy(run_lab):
    _, summary = run_lab()
    assert summary["metrics"]["dev"]["acc"] >= 0.85
    assert summary["timing"]["train_s"] < 30


def test_number_rows_are_written_byte_for_byte_as_csv_writer_writes_them(tmp_path):
    from initlab.record import RecordWriter

    rows = [(0, 1, "fc1.weight", 0.1), (1, 2, "fc1.bias", float("nan")), (2, 3, "fc2.weight", 1e-300),
            (3, 4, "fc2.bias", float("inf")), (4, 5, "fc10.weight", -0.0), (5, 6, "fc1.bias", 3)]
    RecordWriter(tmp_path).write_csv_numbers("grad_norms.csv", rows)
    assert (tmp_path / "grad_norms.csv").read_bytes() == _csv_writer_text("grad_norms.csv", rows).encode()


def test_open_record_reads_a_table_only_when_it_is_used(run_lab):
    from initlab.record import RecordError, open_record, read_record

    run_dir, _ = run_lab(config_name="smoke")
    (run_dir / "weights.csv").write_text("epoch,param\n1\n")
    record = open_record(run_dir)
    assert [row["epoch"] for row in record.metrics] == list(range(1, 21))
    with pytest.raises(RecordError, match="weights.csv"):
        record.table("weights")
    with pytest.raises(RecordError, match="weights.csv"):
        read_record(run_dir)


def test_the_summary_keeps_each_parameters_first_and_last_gradient_norm(run_lab):
    from initlab.report.compare import read_job

    run_dir, summary = run_lab(config_name="smoke")
    with open(run_dir / "grad_norms.csv") as f:
        rows = list(csv.DictReader(f))
    last_step = max(int(r["step"]) for r in rows)
    first = {r["param"]: float(r["norm"]) for r in rows if r["step"] == "0"}
    last = {r["param"]: float(r["norm"]) for r in rows if int(r["step"]) == last_step}
    assert summary["grad_norms"] == {"first": first, "last": last, "last_step": last_step}
    # The comparison reads them from there; a record without them (an older run), from the CSV.
    stored = read_job(run_dir, run_dir.parent)
    del summary["grad_norms"]
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "grad_norms.csv").write_text("step,epoch,param,norm\n")  # would change what is read
    assert read_job(run_dir, run_dir.parent).grad_first == {}
    assert (stored.grad_first, stored.grad_last, stored.last_step) == (first, last, last_step)


@pytest.mark.parametrize("with_gap", [False, True], ids=["all-numbers", "an-empty-cell"])
def test_a_table_read_by_column_equals_its_rows(tmp_path, with_gap):
    """RunRecord.columns (the comparison's read) against the rows, both read from the
    file that csv.writer wrote; an empty cell (NaN) takes the checked path."""
    from initlab.record import open_record

    rows = [[e, 1 / e, 0.5 + e / 1e3, 2 / e, 0.25] for e in range(1, 301)]
    if with_gap:
        rows[7][3] = ""
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed", "epochs_run": 300}))
    with open(tmp_path / "metrics.csv", "w", newline="") as f:
        csv.writer(f).writerows([COLUMNS["metrics.csv"], *rows])
    by_column = open_record(tmp_path).columns("metrics")
    by_row = open_record(tmp_path).metrics
    assert list(by_column) == list(COLUMNS["metrics.csv"])
    for c in COLUMNS["metrics.csv"]:
        expected = [r[c] for r in by_row]
        assert len(by_column[c]) == 300
        assert all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(by_column[c], expected))
    assert type(by_column["epoch"][0]) is int
    assert math.isnan(by_column["dev_loss"][7]) == with_gap
    assert by_column["train_loss"][2] == 1 / 3  # repr round-trips


def _csv_writer_text(name, rows):
    import io

    out = io.StringIO(newline="")
    # The record's number format, stated here on its own: floats with 9 significant
    # digits (what a float32 needs to read back exactly), ints and names as csv.writer has them.
    csv.writer(out).writerows([COLUMNS[name], *[[format(c, ".9g") if isinstance(c, float) else c
                                                 for c in row] for row in rows]])
    return out.getvalue()


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def test_every_float32_reads_back_exactly_from_the_record_format():
    """FLOAT_FORMAT against the float32 bit patterns themselves: 200 000 random ones (every
    exponent), and the edges (subnormals, the largest finite, negative zero)."""
    from initlab.record import FLOAT_FORMAT

    rng = random.Random(0)
    patterns = [rng.getrandbits(32) for _ in range(200_000)] + [1, 0x7F7FFFFF, 0x80000000, 0x00800000]
    for bits in patterns:
        value = struct.unpack("f", struct.pack("I", bits))[0]
        if math.isfinite(value):
            back = float(FLOAT_FORMAT % value)
            assert struct.pack("f", back) == struct.pack("f", value), hex(bits)


def test_the_number_writer_writes_what_csv_writer_writes(tmp_path):
    """write_csv_numbers formats a whole table in one %-format: byte for byte csv.writer's
    text of the record's number format (NaN, infinities, tiny and huge values, ints, names)."""
    from initlab.record import RecordWriter

    rows = [(e, "fc1", u, v, w) for e, (u, v, w) in enumerate([
        (0, 0.1, 1 / 3), (1, math.nan, math.inf), (2, -math.inf, 5e-324), (3, 1e300, -0.0),
        (4, 0.30000000000000004, 123456789.0)])]
    RecordWriter(tmp_path).write_csv_numbers("units.csv", rows)
    assert (tmp_path / "units.csv").read_bytes() == _csv_writer_text("units.csv", rows).encode()


def test_the_gradient_norm_table_writes_and_reads_what_the_rows_hold(tmp_path):
    from initlab.record import GradNormTable, RecordWriter, open_record

    params = ["fc1.weight", "fc1.bias", "fc2.weight"]
    norms = [[_f32(0.5 / (s + 1)), math.nan if s == 3 else _f32(1e-12 * s), _f32(7.0 + s / 3)]
             for s in range(6)]
    table = GradNormTable(params, list(range(6)), [s // 2 + 1 for s in range(6)], norms)
    rows = [(r["step"], r["epoch"], r["param"], r["norm"]) for r in table.rows()]
    assert len(rows) == 18 and rows[4] == (1, 1, "fc1.bias", _f32(1e-12))
    RecordWriter(tmp_path).write_csv_body("grad_norms.csv", table.csv_body())
    assert (tmp_path / "grad_norms.csv").read_bytes() == _csv_writer_text("grad_norms.csv", rows).encode()
    # Read back: the same table, by column (NaN as NaN).
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed"}))
    back = GradNormTable.from_rows(open_record(tmp_path).grad_norms)
    assert (back.params, back.steps, back.epochs) == (params, table.steps, table.epochs)
    # (each the float32 it was: nine digits read back as that float32's nearest neighbour)
    assert all(_f32(a) == b or (math.isnan(a) and math.isnan(b))
               for row_a, row_b in zip(back.norms, norms) for a, b in zip(row_a, row_b))
    # Rows that are not one per parameter per step, in one order, have no table form.
    ragged = table.rows()[:-1]
    assert GradNormTable.from_rows(ragged) is None
    swapped = table.rows()
    swapped[3], swapped[4] = swapped[4], swapped[3]
    assert GradNormTable.from_rows(swapped) is None
