"""initlab in a notebook: examples/textbook.ipynb executed by a real Jupyter kernel
(nbclient and ipykernel, the `notebook` extra; the test skips without them), its numbers
checked against the textbook's, and the Python API's objects as Jupyter shows them."""

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parent.parent / "examples" / "textbook.ipynb"


@pytest.mark.slow
def test_the_textbook_notebook_reproduces_the_three_experiments(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[notebook]'")
    nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[notebook]'")
    pytest.importorskip("ipykernel", reason="pip install -e '.[notebook]'")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = [o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    line = next(t for t in text if t.startswith("RESULTS "))
    results = json.loads(line[len("RESULTS "):])
    zero = results["zero_init"]
    assert zero["train_loss"] == pytest.approx(0.6931, abs=1e-4) and zero["train_acc"] == 0.5
    assert "symmetric_weights" in zero["findings"]
    sigmoid, relu = (results["vanishing_gradient"][a] for a in ("sigmoid", "relu"))
    assert 1e-12 < sigmoid["fc1.weight"] < 1e-10 and 0.1 < sigmoid["fc5.weight"] < 1
    assert sigmoid["fc1.weight"] < relu["fc1.weight"] < 1e-6
    dead, leaky = results["dead_relu"]["relu"], results["dead_relu"]["lrelu"]
    assert [p for p, v in dead.items() if v != 0] == ["fc5.bias"]
    assert all(v > 0 for v in leaky.values())
    # Each run shows itself as its page, figures inline; the records are ordinary ones.
    html = [o["data"]["text/html"] for c in notebook.cells if c.cell_type == "code"
            for o in c.outputs if "text/html" in o.get("data", {})]
    assert len(html) >= 3 and all("<iframe srcdoc=" in h and "data:image/png;base64" in h for h in html)
    assert (tmp_path / "outputs" / "textbook" / "zero_init" / "summary.json").exists()
    assert (tmp_path / "outputs" / "textbook" / "vanishing_compared" / "comparison.csv").exists()


def test_the_api_refuses_bad_input_in_the_clis_words(tmp_path):
    from initlab import api
    from initlab.config import ConfigError

    with pytest.raises(ConfigError, match=r"^model.depth must be >= 1 \(got 0\)$"):
        api.run("smoke", ["model.depth=0"], out=tmp_path / "bad")
    with pytest.raises(ConfigError, match="act=foo is not an option of 'act'"):
        api.run("smoke", ["act=foo"], out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_a_run_from_python_is_an_ordinary_record_that_shows_itself(tmp_path):
    import initlab
    from initlab.record import read_record

    run = initlab.api.run("smoke", ["trainer.epochs=2", "act=tanh"], out=tmp_path / "r")
    assert read_record(run.path).summary["status"] == "completed"
    assert run.findings == [str(d["code"]) for d in run.summary["diagnosis"]]
    metrics = run.metrics
    rows = metrics.to_dict("records") if hasattr(metrics, "to_dict") else metrics
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(run.grad_norms(0)) == {f"fc{k}.{w}" for k in (1, 2, 3) for w in ("weight", "bias")}
    assert "<iframe srcdoc=" in run._repr_html_() and (tmp_path / "r" / "index.html").exists()
    again = initlab.load(tmp_path / "r")
    assert again.summary == run.summary and "act=tanh" in repr(initlab.compare(run, out=tmp_path / "c").rows)
    # The run's folder is free once it returns (a second run may replace it), and a
    # comparison loaded from its folder knows the runs it compared.
    from initlab import preflight

    assert not preflight._held
    initlab.api.run("smoke", ["trainer.epochs=2"], out=tmp_path / "r", overwrite=True)
    assert "overwrite" not in (tmp_path / "r" / ".hydra" / "overrides.yaml").read_text()
    assert [r.path for r in initlab.load(tmp_path / "c").runs] == [(tmp_path / "r").resolve()]
