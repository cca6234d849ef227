"""``create_provider``: a provider from its name, with the usual defaults per name."""

from __future__ import annotations

import os
from dataclasses import dataclass

from polos.errors import ConfigurationError

from ._types import LLMProvider

__all__ = ["PROVIDER_NAMES", "create_provider"]


@dataclass(frozen=True)
class _Compatible:
    """An OpenAI-compatible server: where it usually listens and how it takes a key."""

    base_url: str | None
    key_env: str | None = None
    default_key: str | None = None
    """Sent when no key is given: these servers need none, but the client wants one."""


_COMPATIBLE: dict[str, _Compatible] = {
    "ollama": _Compatible("http://localhost:11434/v1", default_key="ollama"),
    "vllm": _Compatible("http://localhost:8000/v1", key_env="VLLM_API_KEY", default_key="EMPTY"),
    "groq": _Compatible("https://api.groq.com/openai/v1", key_env="GROQ_API_KEY"),
    "together": _Compatible("https://api.together.xyz/v1", key_env="TOGETHER_API_KEY"),
    "fireworks": _Compatible("https://api.fireworks.ai/inference/v1", key_env="FIREWORKS_API_KEY"),
    # Never OPENAI_API_KEY here: that key must not be sent to some other server.
    "openai_compatible": _Compatible(None, default_key="EMPTY"),
}

PROVIDER_NAMES: tuple[str, ...] = ("openai", "anthropic", *_COMPATIBLE)
"""Every name :func:`create_provider` knows."""

_MODEL_APIS = {"responses", "chat_completions"}


def _ollama_base_url() -> str | None:
    """``OLLAMA_HOST`` (``host:port`` or a URL), as the ollama CLI reads it."""
    host = os.environ.get("OLLAMA_HOST", "").strip().rstrip("/")
    if not host:
        return None
    if "://" not in host:
        host = f"http://{host}"
    return f"{host}/v1"


def create_provider(
    name: str,
    *,
    model_api: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    max_retries: int = 3,
    retry_base_delay: float = 0.5,
) -> LLMProvider:
    """The provider called ``name``.

    Args:
        name: ``openai``, ``anthropic``, or an OpenAI-compatible server: ``ollama``
            (``http://localhost:11434/v1`` or ``OLLAMA_HOST``), ``vllm``
            (``http://localhost:8000/v1``), ``groq`` (``GROQ_API_KEY``), ``together``
            (``TOGETHER_API_KEY``), ``fireworks`` (``FIREWORKS_API_KEY``),
            ``openai_compatible`` (``base_url`` required).
        model_api: for ``openai``: ``responses`` (default) or ``chat_completions``; for the
            compatible servers: ``chat_completions`` (default) or ``responses`` (vLLM and
            Ollama serve both); for ``anthropic``: None or ``messages``.
        base_url: the API root; wins over the defaults and ``OPENAI_BASE_URL`` /
            ``ANTHROPIC_BASE_URL``.
        api_key: wins over the environment (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``,
            ``GROQ_API_KEY``...).
        timeout: seconds per HTTP request (None: the client library's default).
        max_retries: retries of rate limits, server errors and network failures.
        retry_base_delay: first backoff in seconds, doubled after each retry (a
            ``retry-after`` from the server wins).

    Raises:
        ConfigurationError: unknown name or model API, no ``base_url`` for
            ``openai_compatible``, or no API key where one is needed.
    """
    key = name.strip().lower().replace("-", "_")
    if key == "anthropic":
        if model_api not in (None, "messages"):
            raise ConfigurationError(
                f"model_api={model_api!r} is not served by 'anthropic' (use 'messages')"
            )
        from ._anthropic import AnthropicProvider

        return AnthropicProvider(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            retry_base_delay=retry_base_delay,
        )

    if key == "openai":
        api = model_api or "responses"
        provider_name = "openai"
    elif key in _COMPATIBLE:
        settings = _COMPATIBLE[key]
        api = model_api or "chat_completions"
        provider_name = key
        if base_url is None:
            base_url = (_ollama_base_url() if key == "ollama" else None) or settings.base_url
        if base_url is None:
            raise ConfigurationError(
                f"the {name!r} LLM provider needs base_url=... (the server's API root, "
                "e.g. http://localhost:8080/v1)"
            )
        if api_key is None and settings.key_env:
            api_key = os.environ.get(settings.key_env)
        if api_key is None:
            api_key = settings.default_key
        if api_key is None:
            raise ConfigurationError(
                f"cannot create the {name!r} LLM provider: no API key. Pass api_key=... "
                f"or set {settings.key_env}."
            )
    else:
        known = ", ".join(PROVIDER_NAMES)
        raise ConfigurationError(f"unknown LLM provider {name!r}; known providers: {known}")

    if api not in _MODEL_APIS:
        raise ConfigurationError(
            f"unknown model_api {model_api!r} for {name!r}; use 'responses' or 'chat_completions'"
        )
    if api == "responses":
        from ._openai_responses import OpenAIResponsesProvider

        return OpenAIResponsesProvider(
            name=provider_name,
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            retry_base_delay=retry_base_delay,
        )
    from ._openai_chat import OpenAIChatProvider

    return OpenAIChatProvider(
        name=provider_name,
        base_url=base_url,
        api_key=api_key,
        timeout=timeout,
        max_retries=max_retries,
        retry_base_delay=retry_base_delay,
        # Compatible servers long knew only ``max_tokens``; OpenAI's reasoning models
        # refuse it and want ``max_completion_tokens``.
        max_tokens_param="max_completion_tokens" if key == "openai" else "max_tokens",
    )
