"""``fake_llm_unless_key``: run agent code offline when no provider key is set.

The examples call it at the top of their ``worker.py``::

    fake_llm_unless_key(answer)   # answer(request) -> FakeReply | str

With ``OPENAI_API_KEY`` (or ``ANTHROPIC_API_KEY``) in the environment it does nothing and
the real provider answers. Without one it starts a :class:`FakeLLMServer` in this
process, answering every model call with ``answer``, and points the official clients at
it through ``OPENAI_BASE_URL`` / ``ANTHROPIC_BASE_URL``, so ``Agent(provider="openai",
...)`` runs unchanged, over real HTTP, without network. ``POLOS_FAKE_LLM=1`` forces the
fake even when a key is set (the example tests do, so a key in CI is never spent).
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Literal

from ._fake_llm import FakeLLMServer, Responder

__all__ = ["fake_llm_unless_key"]

_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
_URL_ENV = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL"}
_started: list[FakeLLMServer] = []


def _forced() -> bool:
    return os.environ.get("POLOS_FAKE_LLM", "").strip().lower() in {"1", "true", "yes"}


def fake_llm_unless_key(
    answer: Responder,
    *,
    providers: tuple[Literal["openai", "anthropic"], ...] = ("openai", "anthropic"),
    quiet: bool = False,
) -> FakeLLMServer | None:
    """Serve model calls from a local fake server unless a real provider key is set.

    Args:
        answer: called with each :class:`FakeRequest`; returns the reply (a ``str`` is a
            text answer, a :class:`FakeReply` can call tools, think, or fail).
        providers: the providers to redirect when their key is missing.
        quiet: do not print the one-line notice on stderr.

    Returns:
        The running fake server, or None when every provider in ``providers`` has a key
        (and ``POLOS_FAKE_LLM`` does not force the fake).
    """
    forced = _forced()
    missing = [p for p in providers if forced or not os.environ.get(_KEY_ENV[p])]
    if not missing:
        return None
    server = FakeLLMServer().start()
    server.respond_with(answer)
    _started.append(server)
    if len(_started) == 1:
        atexit.register(_stop_all)
    for provider in missing:
        os.environ[_KEY_ENV[provider]] = "fake-key"
        os.environ[_URL_ENV[provider]] = (
            server.url if provider == "openai" else server.anthropic_url
        )
    if not quiet:
        print(  # noqa: T201 - the user should know the answers are not a real model's
            f"polos: no {'/'.join(_KEY_ENV[p] for p in missing)} set (or POLOS_FAKE_LLM=1): "
            f"model calls go to the bundled fake model server at {server.root}",
            file=sys.stderr,
            flush=True,
        )
    return server


def _stop_all() -> None:
    for server in _started:
        server.stop()
    _started.clear()
