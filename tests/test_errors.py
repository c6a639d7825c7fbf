"""``errors``: the one answer to "may this succeed later?" (``retryable``), and the message formats."""

from __future__ import annotations

import pytest

from xpander_sync import errors
from xpander_sync.errors import error_class_for_status


@pytest.mark.parametrize(("exc", "retryable"), [
    (errors.TransportError("refused"), True),
    (errors.RequestTimeoutError("read timeout"), True),
    (errors.ServerError(500, "boom"), True),
    (errors.ServerError(503, "busy"), True),
    (errors.RateLimitError(429, "slow down", retry_after=3.0), True),
    (errors.APIError(408, "request timeout"), True),
    (errors.APIError(425, "too early"), True),
    (errors.APIError(400, "bad"), False),
    (errors.APIError(422, "invalid"), False),
    (errors.AuthenticationError(401, "bad key"), False),
    (errors.PermissionDeniedError(403, "no"), False),
    (errors.NotFoundError(404, "gone"), False),
    (errors.ConflictError(409, "conflict"), False),
    (errors.ResponseDecodeError("Task", ["bad @ $.id"], status_code=200), False),
    (errors.InvalidInputError("tokens must be ..."), False),
    (errors.ConfigurationError("no key"), False),
    (errors.OutboxError("locked"), False),
    (errors.BootHookError("hook failed", hook="warm"), False),
    (errors.StoreClosedError("closed"), False),
    (errors.ToolError(422, "nope"), False),
])
def test_retryable_says_whether_the_same_call_may_succeed_later(exc, retryable):
    assert exc.retryable is retryable


def test_every_error_class_answers_retryable():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.XpanderError)]
    assert len(classes) >= 20
    for cls in classes:
        assert isinstance(cls.retryable, property), cls


@pytest.mark.parametrize(("status", "cls"), [(401, errors.AuthenticationError), (403, errors.PermissionDeniedError),
                                             (404, errors.NotFoundError), (409, errors.ConflictError),
                                             (429, errors.RateLimitError), (500, errors.ServerError),
                                             (599, errors.ServerError), (418, errors.APIError)])
def test_status_to_class(status, cls):
    assert error_class_for_status(status) is cls


def test_module_exception_str_keeps_the_official_format():
    assert str(errors.APIError(404, "no agent", method="GET", route="/x")) == "[404] no agent (GET /x)"
    assert str(errors.TransportError("refused")) == "[None] refused"


def test_moved_classes_keep_their_signatures():
    hook = errors.BootHookError("failed", hook="warm")
    assert isinstance(hook, RuntimeError) and hook.hook == "warm"
    tool = errors.ToolError(422, "bad input")
    assert (tool.status_code, tool.detail, str(tool)) == (422, "bad input", "bad input")
    assert isinstance(errors.StoreClosedError("closed"), RuntimeError)
