"""notebooks/explore.ipynb runs headless (nbclient, kernel python3 of this venv) without any cell error:
against the reference server (endpoint passed to the kernel through env vars) and offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "explore.ipynb"


def run_notebook(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> str:
    for k in list(os.environ):
        if k.startswith(("OPENAI_", "DASHSCOPE_", "VIDLINE_")):
            monkeypatch.delenv(k)
    for k, v in env.items():  # the kernel process inherits this environment
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error"
            texts.append(out.get("text", ""))
            texts.append(str(out.get("data", {}).get("text/html", "")))
    return "\n".join(texts)


def test_notebook_against_reference_server(refserver, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("vidline.timeline")
    out = run_notebook(monkeypatch, {"OPENAI_BASE_URL": refserver.openai_base_url, "OPENAI_API_KEY": "sk-test"})
    assert refserver.requests, "the notebook never called the model"
    assert "backend openai" in out
    assert "yellow square" in out and "[square]" in out  # the timeline found the markers; search found them


def test_notebook_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("vidline.timeline")
    out = run_notebook(monkeypatch, {})
    assert "offline motion backend" in out and "backend motion" in out
    assert "[motion]" in out


def test_notebook_with_a_failing_model(refserver, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A model the server does not have stops the run with one line: the walk-through says so and goes
    on offline; a window that fails is listed with its error; the last cell (cut the first search hit)
    has nothing to cut instead of failing."""
    pytest.importorskip("vidline.timeline")
    out = run_notebook(monkeypatch, {"OPENAI_BASE_URL": refserver.openai_base_url, "OPENAI_API_KEY": "sk-test",
                                     "VIDLINE_MODEL": "no-such-model"})
    assert "model run failed" in out and "no-such-model" in out and "backend motion" in out
    refserver.reset()
    refserver.configure(fail_rate=1.0)
    out = run_notebook(monkeypatch, {"OPENAI_BASE_URL": refserver.openai_base_url, "OPENAI_API_KEY": "sk-test"})
    assert "0 events" in out and "failed:" in out
    assert "nothing to cut" in out
