"""Finding the handler (:mod:`xpander_sync.worker.loading`)."""

from __future__ import annotations

from typing import Any

import pytest

from xpander_sync.worker import load_handler


def test_load_handler_from_module_and_function(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "wk_app.py").write_text(
        "from xpander_sync.handlers import on_task\n"
        "@on_task\n"
        "def decorated(task):\n    return task\n"
        "def plain(task):\n    return task\n"
        "def wrong(payload):\n    return payload\n"
        "value = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_handler("wk_app").__name__ == "decorated"  # importing did not block
    assert load_handler("wk_app:plain").__name__ == "plain"
    with pytest.raises(TypeError, match="task"):
        load_handler("wk_app:wrong")
    with pytest.raises(TypeError, match="no attribute"):
        load_handler("wk_app:missing")
    with pytest.raises(TypeError):
        load_handler("wk_app:value")
    with pytest.raises(ImportError):
        load_handler("wk_no_such_module:handler")
    with pytest.raises(TypeError, match="MODULE:FUNCTION"):
        load_handler("wk_app:")
