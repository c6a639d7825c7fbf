"""The user-test example of docs/testing.md runs, as written, in this suite (like a doctest).

The example is taken from the document's "scripted model" section at test time, so the doc cannot
drift from what works: it is executed and its test function called with this suite's
``xpander_backend`` fixture (the plugin's, as a user's suite gets it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "testing.md"
SECTION = "## Running an agent against a scripted model"


def _examples() -> List[str]:
    text = DOC.read_text(encoding="utf-8")
    assert SECTION in text, f"{DOC.name} lost its section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_scripted_model_example_of_the_testing_doc_runs(xpander_backend: Any) -> None:
    pytest.importorskip("agno")  # the example runs an agno agent (the agno extra)
    (code,) = _examples()
    namespace: Dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    tests: List[Callable[..., None]] = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
    assert len(tests) == 1
    tests[0](xpander_backend)
    # it ran for real: the model was asked twice and the platform saw the tool call
    assert len(xpander_backend.local.llm.requests) == 2
    assert len(xpander_backend.tool_calls()) == 1
