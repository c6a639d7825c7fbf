"""Which LLM an agent uses, with which key, headers, endpoint and generation settings (framework-neutral).

Pure apart from reading the process environment: the adapter base resolves a
:class:`ModelSpec` once per agent (:func:`resolve_llm`) and each framework's
``model(spec)`` hook maps it to its model object. The spec also answers the questions
every mapping asks (the temperature, the output-token cap, the OpenAI-wire endpoint, the
Anthropic key), so those answers are written once, here.

**Provider and model.** ``task.llm_model_provider`` / ``llm_model_name`` /
``llm_reasoning_effort`` win over the agent's. The provider is normalised
(lower-case, ``-`` → ``_``); the model id is used exactly as configured (the official
SDK lower-cases it, which breaks case-sensitive ids on Nebius or OpenRouter). When a
task switches the agent to another provider, the agent's stored key and
``llm_api_base`` belong to the old provider and are not used.

**Key precedence** (:func:`resolve_api_key`, the reference's order; first match wins):

1. the task user's OIDC token for the agent's LLM audience (:func:`oidc_llm_token`);
2. ``llm_api_base`` points away from the provider's canonical host (or the provider has
   none) **and** (on the xpander cloud or the provider has a canonical host): the
   agent's stored key, else ``"EMPTY"``: an environment key never goes to an endpoint
   the agent's author chose;
3. no stored key: the environment;
4. cloud (``IS_XPANDER_CLOUD`` is exactly ``"true"``): stored key, else environment;
   locally: environment, else stored key.

Each environment variable is looked up through rules 3-4 in turn; OpenAI checks
``AGENTS_OPENAI_API_KEY`` then ``OPENAI_API_KEY``, so locally a stored key beats
``OPENAI_API_KEY`` but loses to ``AGENTS_OPENAI_API_KEY`` (the reference's truth table).

**Headers** sent to the provider: ``x-oidc-token`` ← the organization's default LLM
headers ← ``agent.llm_extra_headers``, each sanitised, later wins (compared
case-insensitively, so a header is never sent twice). A non-medium reasoning effort
does not drop them (the official SDK's 2.0.0 did).

Keys are :class:`~xpander_sync.Secret` values: revealed only when the model object is
built, never logged.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import urlsplit

import attrs

from .._redact import MaskedStr, Secret, mask_header_values, masked
from ..config import ENV_IS_CLOUD
from ..errors import ConfigurationError, InvalidInputError
from ..models.agent import Agent
from ..models.task import Task
from ._context import sanitize_headers

#: Placeholder key: stops a provider SDK from reading its own environment variable.
EMPTY_KEY = "EMPTY"
#: The value of an OIDC token entry that means "no token".
_NO_TOKEN = "__none__"

#: Environment variables holding each provider's key, in lookup order.
ENV_KEYS: Dict[str, Tuple[str, ...]] = {
    "openai": ("AGENTS_OPENAI_API_KEY", "OPENAI_API_KEY"),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "google_ai_studio": ("GOOGLE_API_KEY",),
    "amazon_bedrock": ("AWS_BEARER_TOKEN_BEDROCK",),
    "azure_ai_foundary": ("AZURE_API_KEY",),
    "nebius": ("NEBIUS_API_KEY",),
    "open_router": ("OPENROUTER_API_KEY",),
    "fireworks": ("FIREWORKS_API_KEY",),
    "nim": ("NVIDIA_API_KEY",),
    "helicone": ("HELICONE_API_KEY",),
    "cloudflare_ai_gw": ("CLOUDFLARE_AI_GW_API_KEY",),
    "bytedance": ("BYTEDANCE_API_KEY",),
    "tzafon_lightcone": ("TZAFON_LIGHTCONE_API_KEY",),
    "cerebras": ("CEREBRAS_API_KEY",),
    "z_ai": ("Z_AI_API_KEY",),
    "openai_compatible": ("OPENAI_COMPATIBLE_API_KEY",),
}

#: Base URLs used when the agent sets no ``llm_api_base`` (providers whose framework
#: class has no preset endpoint).
DEFAULT_BASE_URLS: Dict[str, str] = {
    "helicone": "https://ai-gateway.helicone.ai/v1",
    "bytedance": "https://ark.ap-southeast.bytepluses.com/api/v3",
    "tzafon_lightcone": "https://api.tzafon.ai/v1",
    "cerebras": "https://api.cerebras.ai/v1",
    "z_ai": "https://api.z.ai/api/paas/v4",
}

#: The hosts a provider's own key may be sent to (rule 2 of the key precedence).
CANONICAL_HOSTS: Dict[str, Tuple[str, ...]] = {
    "openai": ("api.openai.com",),
    "anthropic": ("api.anthropic.com",),
    "google_ai_studio": ("generativelanguage.googleapis.com",),
    "open_router": ("openrouter.ai",),
    "nebius": ("api.tokenfactory.nebius.com", "api.studio.nebius.com", "api.studio.nebius.ai"),
    "fireworks": ("api.fireworks.ai",),
    "nim": ("integrate.api.nvidia.com",),
    "cerebras": ("api.cerebras.ai",),
    "tzafon_lightcone": ("api.tzafon.ai",),
    "z_ai": ("api.z.ai",),
    "bytedance": ("ark.ap-southeast.bytepluses.com",),
    "helicone": ("ai-gateway.helicone.ai",),
}

#: Providers that speak the OpenAI chat API and accept ``user`` and ``prompt_cache_key``.
OPENAI_WIRE_PROVIDERS = frozenset(
    {
        "openai", "nebius", "open_router", "fireworks", "nim", "helicone", "cloudflare_ai_gw",
        "bytedance", "tzafon_lightcone", "cerebras",
    }
)

#: Base URLs of the OpenAI-compatible providers (agno has them preset in its classes).
OPENAI_WIRE_BASE_URLS: Dict[str, str] = {
    "nebius": "https://api.tokenfactory.nebius.com/v1/",
    "open_router": "https://openrouter.ai/api/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "nim": "https://integrate.api.nvidia.com/v1",
    **DEFAULT_BASE_URLS,
}
#: Providers whose endpoint is the user's own: ``llm_api_base`` is required.
NEEDS_BASE_URL = ("cloudflare_ai_gw", "openai_compatible")
#: Providers only the agno adapter maps (the others refuse them).
REFUSED_PROVIDERS = ("google_ai_studio", "amazon_bedrock", "azure_ai_foundary")
#: Output token cap for Anthropic and OpenRouter (their SDK defaults are small), as agno's adapter.
MAX_OUTPUT_TOKENS = 32000
#: The longest a model request may take without an explicit timeout (the provider SDKs' default: 10 min).
DEFAULT_REQUEST_SECONDS = 600.0
#: How long the anthropic SDK expects an output of 128,000 tokens to take (one hour); it refuses a
#: non-streaming request whose cap may take longer than :data:`DEFAULT_REQUEST_SECONDS` unless the
#: caller sets a timeout.
_SECONDS_PER_128K_OUTPUT = 3600.0

#: Spellings of the same provider seen in the wild, mapped to the platform's names.
_PROVIDER_ALIASES = {"azure_ai_foundry": "azure_ai_foundary", "openrouter": "open_router"}


@attrs.frozen
class ModelSpec:
    """Everything an adapter needs to build the agent's model object, resolved once.

    Attributes:
        provider: the normalised provider (``openai``, ``anthropic``, ...).
        model_id: the model id, as configured (case kept).
        api_key: the resolved key (``Secret``), ``None`` to let the provider SDK decide.
        base_url: the endpoint (``llm_api_base``, or the provider's default), or ``None``.
        extra_headers: headers for the provider (may hold ``x-oidc-token``; not in repr).
        reasoning_effort: the effort to request, only for reasoning-family models and
            only when it is not ``medium``.
        organization_id: sent as the ``user`` attribution where the provider takes one.
        agent_id: the agent the model is for.
        base_url_is_custom: ``base_url`` came from the agent (``llm_api_base``).
        generation: the caller's generation parameters (``override``: ``temperature``,
            ``max_tokens``, ...); :attr:`temperature` and :attr:`max_tokens` answer with them.
    """

    provider: str
    model_id: str
    api_key: Optional[Secret] = attrs.field(default=None)
    base_url: Optional[str] = None
    extra_headers: Dict[str, str] = attrs.field(factory=dict, repr=False)
    reasoning_effort: Optional[str] = None
    organization_id: str = ""
    agent_id: str = ""
    base_url_is_custom: bool = False
    generation: Dict[str, Any] = attrs.field(factory=dict)

    @property
    def is_reasoning_family(self) -> bool:
        """Whether the model id names a gpt-5 / gpt-6 reasoning model."""
        return is_reasoning_family(self.model_id)

    @property
    def prompt_cache_key(self) -> str:
        """``"{org}:{agent}"``, or its md5 hex digest when longer than 64 characters."""
        raw = f"{self.organization_id}:{self.agent_id}"
        if len(raw) <= 64:
            return raw
        return hashlib.md5(raw.encode("utf-8")).hexdigest()  # a cache key, not a security use

    # -- generation settings shared by the adapters -------------------------------------

    @property
    def key(self) -> Optional[str]:
        """The resolved key, revealed as a :class:`~xpander_sync._redact.MaskedStr` (only call this where the model
        object is built): the real value for the provider's HTTP client, ``'***'`` in every ``repr``."""
        return masked(self.api_key.reveal()) if self.api_key else None

    @property
    def temperature(self) -> Optional[float]:
        """The caller's ``temperature``; else 0.0 for OpenAI, NIM and Anthropic models (as agno's adapter), ``None``
        for reasoning and other models."""
        if "temperature" in self.generation:
            return float(self.generation["temperature"])
        if self.provider in ("openai", "nim") and not self.is_reasoning_family:
            return 0.0
        if self.provider == "anthropic" and "fable" not in self.model_id.lower():
            return 0.0
        return None

    @property
    def max_tokens(self) -> Optional[int]:
        """The caller's ``max_tokens``; else :data:`MAX_OUTPUT_TOKENS` for Anthropic and OpenRouter (small SDK
        defaults), else ``None``."""
        if "max_tokens" in self.generation:
            return int(self.generation["max_tokens"])
        return MAX_OUTPUT_TOKENS if self.provider in ("anthropic", "open_router") else None

    @property
    def request_timeout(self) -> Optional[float]:
        """Seconds a model request may take: explicit whenever an output cap is set, else ``None``.

        The rule every adapter follows: a model built with :attr:`max_tokens` also gets this
        timeout. The anthropic SDK (directly, or through agno, any-llm or google-adk) refuses a
        non-streaming request whose cap may take over ten minutes ("Streaming is required...")
        unless the caller gives one; sized like its own estimate (one hour per 128,000 output
        tokens, at least :data:`DEFAULT_REQUEST_SECONDS`): 900 s for the 32,000-token cap.
        """
        cap = self.max_tokens
        if not cap:
            return None
        return max(DEFAULT_REQUEST_SECONDS, _SECONDS_PER_128K_OUTPUT * cap / 128_000)

    @property
    def uses_responses_api(self) -> bool:
        """OpenAI models only served by the Responses API (gpt-5.6, gpt-6)."""
        return self.provider == "openai" and is_responses_only(self.model_id)

    @property
    def is_openai_wire(self) -> bool:
        """Whether the provider is served through an OpenAI-compatible client."""
        provider = self.provider
        return (
            provider == "openai"
            or provider in OPENAI_WIRE_BASE_URLS
            or provider in NEEDS_BASE_URL
            or (bool(self.base_url) and provider not in REFUSED_PROVIDERS and provider != "anthropic")
        )

    def anthropic_key(self) -> str:
        """The resolved Anthropic key.

        Raises:
            ConfigurationError: no key (the message names ``ANTHROPIC_API_KEY``).
        """
        key = self.key
        if not key:
            raise ConfigurationError(
                f"agent {self.agent_id}: no Anthropic API key: set ANTHROPIC_API_KEY or store a key on the agent"
            )
        return key

    def openai_endpoint(self, framework: str) -> OpenAIEndpoint:
        """Where an OpenAI-wire model of ``framework`` sends its requests.

        Raises:
            InvalidInputError: a provider the OpenAI wire does not serve (the message names
                ``framework``), or a required ``llm_api_base`` missing.
            ConfigurationError: OpenAI without a key.
        """
        if self.provider in REFUSED_PROVIDERS or not self.is_openai_wire:
            raise self.unsupported(framework)
        return OpenAIEndpoint(self)

    def unsupported(self, framework: str, extra: str = "") -> InvalidInputError:
        """The error for a provider ``framework``'s adapter cannot build."""
        return InvalidInputError(
            f"model provider {self.provider!r} is not supported by the {framework} adapter; supported: "
            "openai, anthropic and OpenAI-compatible providers (nebius, open_router, fireworks, nim, helicone, "
            "bytedance, tzafon_lightcone, cerebras, z_ai, cloudflare_ai_gw, openai_compatible, or any provider "
            f"with llm_api_base){extra}. Pass override={{'model': ...}} to use your own model object"
        )


#: The former name of :class:`ModelSpec`.
LLMSettings = ModelSpec


class OpenAIEndpoint:
    """Where an OpenAI-wire model sends its requests (resolved from a :class:`ModelSpec`).

    Attributes:
        api_key: the key to send (``"EMPTY"`` for a keyless OpenAI-compatible endpoint).
        base_url: the endpoint, ``None`` for OpenAI's own.
        headers: extra headers for every request.
        user: the organization id, sent as ``user``.
        prompt_cache_key: sent to providers that accept it, else ``None``.
    """

    def __init__(self, spec: ModelSpec) -> None:
        provider = spec.provider
        if provider in NEEDS_BASE_URL and not spec.base_url:
            raise InvalidInputError(f"model provider {provider!r} needs the agent's llm_api_base")
        key = spec.key
        if provider == "openai" and not key:
            raise ConfigurationError(
                f"agent {spec.agent_id}: no OpenAI API key: set OPENAI_API_KEY (or AGENTS_OPENAI_API_KEY) "
                "or store a key on the agent"
            )
        # Any endpoint but OpenAI's own gets a placeholder, never the client's env lookup.
        self.api_key: str = key or MaskedStr(EMPTY_KEY)
        self.base_url: Optional[str] = spec.base_url or OPENAI_WIRE_BASE_URLS.get(provider)
        self.headers: Dict[str, str] = dict(spec.extra_headers)
        self.user: Optional[str] = spec.organization_id or None
        self.prompt_cache_key: Optional[str] = spec.prompt_cache_key if provider in OPENAI_WIRE_PROVIDERS else None


@functools.cache
def anthropic_sdk_takes(parameter: str) -> bool:
    """Whether the installed anthropic SDK's ``messages.create`` accepts ``parameter`` as a keyword.

    anthropic 2.x dropped the sampling keywords (``temperature``, ``top_p``, ``top_k``) from
    ``messages.create``: a framework that passes them as keywords (google-adk's ``AnthropicLlm``)
    fails with ``TypeError`` before any request. Adapters ask this before handing such a keyword
    to a framework, so a parameter the installed SDK rejects is never sent. ``True`` when the SDK
    is not installed (nothing is built with it then).

    Args:
        parameter: the keyword, e.g. ``"temperature"``.

    Returns:
        Whether ``Messages.create`` has that parameter (or takes ``**kwargs``).
    """
    try:
        from anthropic.resources.messages import Messages
    except ImportError:
        return True
    signature = inspect.signature(Messages.create)
    return parameter in signature.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    )


def normalize_provider(value: Optional[str]) -> str:
    """``" Open-Router "`` → ``"open_router"``; unknown names are kept (normalised)."""
    name = (value or "").strip().lower().replace("-", "_")
    return _PROVIDER_ALIASES.get(name, name)


def is_reasoning_family(model_id: str) -> bool:
    """Whether ``model_id`` contains ``gpt-5`` or ``gpt-6`` (case-insensitive)."""
    lowered = model_id.lower()
    return "gpt-5" in lowered or "gpt-6" in lowered


def is_responses_only(model_id: str) -> bool:
    """Whether ``model_id`` is only served by OpenAI's Responses API (gpt-5.6, gpt-6)."""
    lowered = model_id.lower()
    return "gpt-5.6" in lowered or "gpt-6" in lowered


def is_cloud(environ: Optional[Mapping[str, str]] = None) -> bool:
    """``IS_XPANDER_CLOUD`` is exactly ``"true"``."""
    env = os.environ if environ is None else environ
    return env.get(ENV_IS_CLOUD) == "true"


def points_away(provider: str, api_base: Optional[str]) -> bool:
    """Whether ``api_base`` is set and is not one of the provider's canonical hosts."""
    if not api_base or not api_base.strip():
        return False
    hosts = CANONICAL_HOSTS.get(provider)
    if not hosts:
        return True
    text = api_base.strip()
    if "://" not in text:
        text = "//" + text
    try:
        host = (urlsplit(text).hostname or "").lower()
    except ValueError:
        return True
    return host not in hosts


def oidc_llm_token(agent: Agent, task: Optional[Task]) -> Optional[Secret]:
    """The task user's OIDC token for the agent's LLM audience, when the agent uses one.

    Needs ``agent.pre_auth_audiences`` non-empty, ``use_oidc_pre_auth_token_for_llm``,
    ``oidc_pre_auth_token_llm_audience`` and ``task.user_tokens["oidc_tokens"]`` a dict.
    The ``"__none__"`` placeholder counts as no token.
    """
    audience = agent.oidc_pre_auth_token_llm_audience
    if not (agent.pre_auth_audiences and agent.use_oidc_pre_auth_token_for_llm and audience):
        return None
    if task is None or not isinstance(task.user_tokens, dict):
        return None
    tokens = task.user_tokens.get("oidc_tokens")
    if not isinstance(tokens, dict):
        return None
    token = tokens.get(audience)
    if not isinstance(token, str) or not token.strip() or token == _NO_TOKEN:
        return None
    return Secret(token.strip())


def resolve_api_key(
    provider: str,
    *,
    custom_key: Optional[Secret] = None,
    oidc_token: Optional[Secret] = None,
    api_base: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
    env_names: Optional[Tuple[str, ...]] = None,
) -> Optional[Secret]:
    """The key to send to the provider (the module docstring's precedence).

    Args:
        provider: the normalised provider.
        custom_key: the agent's stored key (``llm_credentials.value``).
        oidc_token: the task user's OIDC token for the LLM audience.
        api_base: the agent's ``llm_api_base``.
        environ: the environment (default ``os.environ``).
        env_names: the variables to look in (default: :data:`ENV_KEYS` for the provider).

    Returns:
        A :class:`Secret`, or ``None`` when nothing was found.
    """
    if oidc_token:
        return oidc_token
    env = os.environ if environ is None else environ
    cloud = is_cloud(env)
    custom = custom_key if custom_key else None
    if points_away(provider, api_base) and (cloud or provider in CANONICAL_HOSTS):
        return custom or Secret(EMPTY_KEY)
    names = env_names if env_names is not None else ENV_KEYS.get(provider, ())
    for name in names:
        value = env.get(name) or None
        env_key = Secret(value) if value else None
        if custom is None:
            found = env_key
        elif cloud:
            found = custom
        else:
            found = env_key or custom
        if found:
            return found
    # A provider without environment variables still gets its stored key.
    return custom


def merge_headers(*layers: Optional[Mapping[str, Any]]) -> Dict[str, str]:
    """Sanitise each layer and merge them, later layers winning (names compared case-insensitively)."""
    merged: Dict[str, Tuple[str, str]] = {}
    for layer in layers:
        for name, value in sanitize_headers(dict(layer) if layer else {}).items():
            merged[name.lower()] = (name, value)
    return dict(merged.values())


def resolve_llm(
    agent: Agent,
    task: Optional[Task],
    org_headers: Optional[Mapping[str, Any]] = None,
    *,
    environ: Optional[Mapping[str, str]] = None,
    model: Optional[Tuple[Optional[str], str]] = None,
    generation: Optional[Mapping[str, Any]] = None,
) -> ModelSpec:
    """The model settings for ``agent`` running ``task``.

    Args:
        agent: the agent.
        task: the task (its model/provider/effort and OIDC token win), or ``None``.
        org_headers: the organization's default LLM headers.
        environ: the environment (default ``os.environ``).
        model: the caller's ``(provider or None, model id)`` (``override["model"]``): wins
            over the task's and the agent's; ``None`` as provider keeps theirs. Key,
            headers and endpoint are resolved as for the agent's own model.
        generation: the caller's generation parameters (``override``); its
            ``reasoning_effort`` is sent as given.

    Returns:
        The :class:`ModelSpec`.
    """
    agent_provider = normalize_provider(agent.model_provider)
    provider = agent_provider
    model_id = (agent.model_name or "").strip()
    effort = agent.llm_reasoning_effort
    if task is not None:
        if task.llm_model_provider and task.llm_model_provider.strip():
            provider = normalize_provider(task.llm_model_provider)
        if task.llm_model_name and task.llm_model_name.strip():
            model_id = task.llm_model_name.strip()
        if task.llm_reasoning_effort and task.llm_reasoning_effort.strip():
            effort = task.llm_reasoning_effort
    if model is not None:
        if model[0]:
            provider = normalize_provider(model[0])
        model_id = model[1].strip()
    same_provider = provider == agent_provider
    custom_key = agent.llm_credentials.value if agent.llm_credentials is not None and same_provider else None
    api_base = ((agent.llm_api_base or "").strip() or None) if same_provider else None

    oidc = oidc_llm_token(agent, task)
    headers = merge_headers(
        {"x-oidc-token": oidc.reveal()} if oidc else None,
        org_headers,
        agent.llm_extra_headers,
    )
    headers = mask_header_values(headers)
    key: Optional[Secret] = None
    if provider == "azure_ai_foundary" and not oidc:
        # Azure AI Foundry agents keep their key in an Authorization header (reference 3.3.3).
        key = _take_authorization(headers)
    if key is None:
        key = resolve_api_key(
            provider, custom_key=custom_key, oidc_token=oidc, api_base=api_base, environ=environ,
            env_names=ENV_KEYS.get(provider, ENV_KEYS["openai_compatible"]),
        )

    effort_value = str(effort).strip().lower() if effort else None
    if not effort_value or effort_value == "medium" or not is_reasoning_family(model_id):
        effort_value = None
    chosen = dict(generation or {})
    if chosen.get("reasoning_effort"):
        effort_value = str(chosen["reasoning_effort"]).strip().lower()

    return ModelSpec(
        provider=provider,
        model_id=model_id,
        api_key=key,
        base_url=api_base or DEFAULT_BASE_URLS.get(provider),
        extra_headers=headers,
        reasoning_effort=effort_value,
        organization_id=agent.organization_id,
        agent_id=agent.id,
        base_url_is_custom=api_base is not None,
        generation=chosen,
    )


def _take_authorization(headers: Dict[str, str]) -> Optional[Secret]:
    """Remove the ``Authorization`` header from ``headers`` and return its token (``Bearer`` stripped)."""
    for name in list(headers):
        if name.lower() == "authorization":
            value = headers.pop(name).strip()
            if value[:7].lower() == "bearer ":
                value = value[7:].strip()
            return Secret(value) if value else None
    return None
