"""``examples/notebook.ipynb`` (docs/guides/jupyter.md) executed by nbclient in a real kernel."""

from __future__ import annotations

import json
import re

from .conftest import DOCS_GUIDES, EXAMPLES, xpander_settings

NOTEBOOK = EXAMPLES / "notebook.ipynb"


def code_cells(notebook) -> list:
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def stdout_of(cell) -> str:
    assert not [o for o in cell["outputs"] if o["output_type"] == "error"], cell["outputs"]
    return "".join(o.get("text", "") for o in cell["outputs"] if o.get("name") == "stdout")


def test_notebook_runs_in_a_kernel(notebook_runner, monkeypatch, tmp_path, xpander_backend):
    for name, value in xpander_settings(xpander_backend).items():
        monkeypatch.setenv(name, value)  # the kernel inherits the environment it starts with

    executed = notebook_runner(NOTEBOOK, tmp_path)

    sync_cell, await_cell, tool_cell, report_cell = map(stdout_of, code_cells(executed))
    assert sync_cell == "CRM Assistant ['XpanderCrmSearchContacts', 'XpanderCrmCreateNote']\n"
    assert await_cell == "CRM Assistant built from aget_args\n"
    assert json.loads(tool_cell)["payload"]["query_params"]["q"] == "ada"
    (call,) = xpander_backend.tool_calls()
    assert call["tool_id"] == "XpanderCrmSearchContacts" and call["body"]["query_params"]["q"] == "ada"
    (report,) = xpander_backend.reports()
    assert report_cell == f"reported task {report['body']['id']}\n"
    assert report["body"]["used_tools"] == ["XpanderCrmSearchContacts"]
    assert report["body"]["result"] == tool_cell.rstrip("\n")


def test_the_guide_shows_the_notebook_cells():
    """docs/guides/jupyter.md repeats the cells (Sphinx cannot include a notebook's cells); keep them equal."""
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    page = (DOCS_GUIDES / "jupyter.md").read_text(encoding="utf-8")
    shown = [block.rstrip("\n") for block in re.findall(r"```python\n(.*?)```", page, flags=re.S)]
    assert shown == ["".join(cell["source"]) for cell in code_cells(notebook)]
