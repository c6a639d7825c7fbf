"""Configuration: environment precedence, base-URL normalisation, the organization-segment rule."""

from __future__ import annotations

import pytest

from xpander_sync import Configuration, ConfigurationError
from xpander_sync.config import needs_organization_segment


@pytest.mark.parametrize(
    "env, explicit, expected",
    [
        ({}, None, "https://inbound.xpander.ai"),
        ({"IS_STG": "true"}, None, "https://inbound.stg.xpander.ai"),
        ({"IS_STG": "True"}, None, "https://inbound.xpander.ai"),  # exactly "true" counts
        ({"IS_STG": "1"}, None, "https://inbound.xpander.ai"),
        ({"XPANDER_BASE_URL": "my.host"}, None, "https://my.host"),
        ({"XPANDER_BASE_URL": "http://localhost:9016"}, None, "http://localhost:9016"),
        ({"XPANDER_BASE_URL": "https://x.example/", "IS_STG": "true"}, None, "https://x.example"),
        ({"XPANDER_BASE_URL": ""}, None, "https://inbound.xpander.ai"),  # empty = unset
        ({"XPANDER_BASE_URL": "https://env.example"}, "https://arg.example", "https://arg.example"),
        ({}, "arg.example", "https://arg.example"),  # explicit values are normalised too
        ({"XPANDER_BASE_URL": "https://env.example"}, "", "https://env.example"),  # empty explicit falls back
    ],
)
def test_base_url_resolution(monkeypatch, env, explicit, expected):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    kwargs = {} if explicit is None else {"base_url": explicit}
    assert Configuration(**kwargs).base_url == expected


def test_environment_is_read_when_built_not_at_import(monkeypatch):
    monkeypatch.setenv("XPANDER_API_KEY", "k1")
    first = Configuration()
    monkeypatch.setenv("XPANDER_API_KEY", "k2")
    monkeypatch.setenv("XPANDER_ORGANIZATION_ID", "org-2")
    monkeypatch.setenv("XPANDER_AGENT_ID", "agt-2")
    second = Configuration()
    assert first.api_key.reveal() == "k1"
    assert (second.api_key.reveal(), second.organization_id, second.agent_id) == ("k2", "org-2", "agt-2")


def test_explicit_arguments_win_over_environment(monkeypatch):
    monkeypatch.setenv("XPANDER_API_KEY", "env-key")
    monkeypatch.setenv("XPANDER_ORGANIZATION_ID", "env-org")
    monkeypatch.setenv("XPANDER_AGENT_ID", "env-agent")
    cfg = Configuration(api_key="arg-key", organization_id="arg-org", agent_id="arg-agent")
    assert (cfg.api_key.reveal(), cfg.organization_id, cfg.agent_id) == ("arg-key", "arg-org", "arg-agent")


@pytest.mark.parametrize(
    "base, needs",
    [
        ("https://agent-controller.xpander.ai", True),
        ("https://agent-controller.stg.xpander.ai", True),
        ("http://localhost:9016", True),
        ("http://localhost:19016", False),  # the port, not a substring
        ("https://host.example/agent-controller", True),
        ("https://host.example/api/agent-controller", False),
        ("https://inbound.xpander.ai", False),
        ("http://127.0.0.1:8085", False),
    ],
)
def test_organization_segment_rule(base, needs):
    assert needs_organization_segment(base) is needs
    cfg = Configuration(base_url=base, organization_id="org1")
    assert cfg.full_url == (f"{base}/org1" if needs else base)


def test_organization_segment_without_organization_is_a_clear_error():
    cfg = Configuration(base_url="http://localhost:9016")
    with pytest.raises(ConfigurationError, match="XPANDER_ORGANIZATION_ID"):
        _ = cfg.full_url


@pytest.mark.parametrize(
    "base, root",
    [
        ("https://inbound.xpander.ai", "https://agent-controller.xpander.ai/o1"),
        ("https://inbound.stg.xpander.ai", "https://agent-controller.stg.xpander.ai/o1"),
        ("http://localhost:8085", "http://localhost:9016/o1"),
        ("http://127.0.0.1:5555", "http://127.0.0.1:5555/o1"),
    ],
)
def test_events_root(base, root):
    assert Configuration(base_url=base, organization_id="o1").events_root == root


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"read_timeout": -1}, "read_timeout"),
        ({"agent_cache_ttl": -5}, "agent_cache_ttl"),
        ({"pool_maxsize": 0}, "pool_maxsize"),
        ({"base_url": "https://"}, "base_url"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigurationError, match=field):
        Configuration(**kwargs)


def test_api_key_hidden_and_configuration_hashable():
    cfg = Configuration(api_key="xpk-TOPSECRET")
    assert "TOPSECRET" not in repr(cfg)
    assert "TOPSECRET" not in str(cfg)
    assert hash(cfg) == hash(Configuration(api_key="xpk-TOPSECRET"))
    assert cfg == Configuration(api_key="xpk-TOPSECRET")
    assert cfg != Configuration(api_key="other")


def test_defaults_are_sane():
    cfg = Configuration()
    assert cfg.timeout == (10.0, 60.0)
    assert cfg.retry.max_retries == 2
    assert cfg.pool_maxsize >= 32
    assert (cfg.agent_cache_ttl, cfg.metadata_cache_ttl) == (5.0, 60.0)


def test_proxies_are_kept_as_a_mapping():
    cfg = Configuration(proxies={"https": "http://proxy:3128"})
    assert cfg.proxies_dict == {"https": "http://proxy:3128"}
    hash(cfg)


# -- issue 16, findings 2 and 8: every field is checked at construction; a bad key is never shown ----

KEY = "xpk-NEWLINE-SENTINEL-4d1c9a"


@pytest.mark.parametrize("bad", [KEY + "\n", " " + KEY, KEY + "\r\n", "xpk-\x00-nul", "xpk-ключ"])
def test_a_key_that_cannot_be_a_header_is_refused_without_showing_it(bad, monkeypatch):
    with pytest.raises(ConfigurationError, match="api_key") as info:
        Configuration(api_key=bad)
    assert KEY not in str(info.value) and "ключ" not in str(info.value)
    if "\x00" not in bad:  # an environment variable cannot hold NUL
        monkeypatch.setenv("XPANDER_API_KEY", bad)  # read from a file or a Kubernetes secret
        with pytest.raises(ConfigurationError, match="XPANDER_API_KEY"):
            Configuration()


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"read_timeout": float("nan")}, "read_timeout"),
    ({"read_timeout": float("inf")}, "read_timeout"),
    ({"connect_timeout": float("nan")}, "connect_timeout"),
    ({"agent_cache_ttl": float("inf")}, "agent_cache_ttl"),
    ({"retry": "x"}, "retry"),
    ({"verify": "/nonexistent/ca.pem"}, "verify"),
    ({"verify": 1}, "verify"),
    ({"proxies": {"https": 5}}, "proxies"),
    ({"proxies": "http://proxy"}, "proxies"),
    ({"base_url": 5}, "base_url"),
    ({"base_url": "https://host/a b"}, "base_url"),
    ({"outbox": 5}, "outbox"),
    ({"api_key": 5}, "api_key"),
    ({"organization_id": "org\r\n"}, "organization_id"),
    ({"agent_id": 7}, "agent_id"),
])
def test_every_field_is_checked_when_the_configuration_is_built(kwargs, field):
    with pytest.raises(ConfigurationError, match=field):
        Configuration(**kwargs)
