"""``examples/notebook.ipynb`` (docs/guides/jupyter.md) executed by nbclient in a real kernel.

The local backend's LLM is scripted (``xpander_backend.script_llm``): in each run the model calls
the sample CRM agent's search tool, then answers with the tool's result. The kernel, another
process, reaches the model through the backend's LLM proxy, as any agent ``get_args`` builds.
"""

from __future__ import annotations

import json
import re

from xpander_sync.testing import Usage, answer_with_tool_result, call_first_tool

from .conftest import DOCS_GUIDES, EXAMPLES, xpander_settings

NOTEBOOK = EXAMPLES / "notebook.ipynb"
SEARCH = "XpanderCrmSearchContacts"


def code_cells(notebook) -> list:
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def stdout_of(cell) -> str:
    assert not [o for o in cell["outputs"] if o["output_type"] == "error"], cell["outputs"]
    return "".join(o.get("text", "") for o in cell["outputs"] if o.get("name") == "stdout")


def test_notebook_runs_in_a_kernel(notebook_runner, monkeypatch, tmp_path, xpander_backend):
    for name, value in xpander_settings(xpander_backend).items():
        monkeypatch.setenv(name, value)  # the kernel inherits the environment it starts with
    model = xpander_backend.script_llm([
        call_first_tool(SEARCH, {"query_params": {"q": "ada"}}, usage=Usage(101, 17)),
        answer_with_tool_result("Found: ", usage=Usage(211, 29)),
        call_first_tool(SEARCH, {"query_params": {"q": "ada"}}, usage=Usage(55, 6)),
        answer_with_tool_result("Again: ", usage=Usage(77, 8)),
    ])

    executed = notebook_runner(NOTEBOOK, tmp_path)

    sync_cell, await_cell, track_cell, async_cell = map(stdout_of, code_cells(executed))
    assert sync_cell == "CRM Assistant ['XpanderCrmSearchContacts', 'XpanderCrmCreateNote']\n"
    assert await_cell == "CRM Assistant built from aget_args\n"
    assert model.remaining == 0 and all(r.status == 200 for r in model.requests)
    calls = xpander_backend.tool_calls()
    assert [c["tool_id"] for c in calls] == [SEARCH, SEARCH]
    assert all(c["body"]["query_params"]["q"] == "ada" for c in calls)

    tracked, awaited = (r["body"] for r in xpander_backend.reports())
    answer, tools, reported = track_cell.rstrip("\n").split("\n")
    assert answer.startswith("Found: ") and json.loads(answer[len("Found: "):])["payload"]["query_params"]["q"] == "ada"
    assert tools == f"tools: ['{SEARCH}']"
    assert re.fullmatch(rf"reported task {tracked['id']} in [0-9.]+ s", reported), reported
    assert tracked["result"] == answer and tracked["input"] == "Find Ada" and tracked["is_success"] is True
    assert tracked["used_tools"] == [SEARCH] and tracked["duration"] > 0
    assert (tracked["tokens"]["prompt_tokens"], tracked["tokens"]["completion_tokens"]) == (312, 46)

    answer, reported = async_cell.rstrip("\n").split("\n")
    assert answer.startswith("Again: ") and reported == f"reported task {awaited['id']}"
    assert awaited["result"] == answer and awaited["input"] == "Find Ada again" and awaited["is_success"] is True
    assert awaited["used_tools"] == [SEARCH]
    assert (awaited["tokens"]["prompt_tokens"], awaited["tokens"]["completion_tokens"]) == (132, 14)


def test_the_guide_shows_the_notebook_cells():
    """docs/guides/jupyter.md repeats the cells (Sphinx cannot include a notebook's cells); keep them equal."""
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    page = (DOCS_GUIDES / "jupyter.md").read_text(encoding="utf-8")
    shown = [block.rstrip("\n") for block in re.findall(r"```python\n(.*?)```", page, flags=re.S)]
    assert shown == ["".join(cell["source"]) for cell in code_cells(notebook)]
