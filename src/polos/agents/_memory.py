"""Session memory in the agent loop: load, compact, save (through the orchestrator's API).

A run with ``session_id`` starts from the session's stored conversation: a rolling
``summary`` (given to the model in the system prompt, so that message roles stay as
the providers require) and the recent ``messages``. When the stored conversation is
larger than the agent's ``memory_token_budget``, the older part is folded into the
summary by one model call (a recorded ``llm`` step). The run's whole conversation is
saved at the end, with optimistic concurrency: a concurrent run of the same session
does not lose its turns (the save re-reads and appends).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pydantic

from polos.errors import SessionConflictError
from polos.llm import Message

_SAVE_TRIES = 5


def estimate_tokens(messages: Sequence[Message], summary: str | None = None) -> int:
    """A rough token count (4 characters a token) of a conversation, for budgets."""
    chars = len(summary or "")
    for m in messages:
        chars += len(m.content) + len(m.reasoning or "")
        chars += sum(len(c.name) + len(json.dumps(c.arguments)) for c in m.tool_calls)
    return chars // 4 + 4 * len(messages)


def parse_messages(raw: Sequence[Any]) -> list[Message]:
    """Stored messages as :class:`Message` objects (foreign or broken entries are skipped)."""
    out = []
    for item in raw:
        try:
            out.append(Message.model_validate(item))
        except pydantic.ValidationError:
            continue
    return out


def turn_start(messages: Sequence[Message], keep: int) -> int:
    """Where to cut so that about ``keep`` recent messages remain and the kept part starts
    at a user message (never with a tool result whose call was cut off)."""
    cut = max(0, len(messages) - keep)
    while cut < len(messages) and messages[cut].role != "user":
        cut += 1
    return cut if cut < len(messages) else len(messages)


def with_summary(system_prompt: str | None, summary: str | None) -> str | None:
    """The system prompt with the session's summary appended."""
    if not summary:
        return system_prompt
    note = f"Summary of the conversation so far:\n{summary}"
    return f"{system_prompt}\n\n{note}" if system_prompt else note


COMPACTION_PROMPT = (
    "Summarise the conversation below for your own later use: keep facts, decisions, "
    "names, numbers and open questions; drop pleasantries. Earlier summary (may be empty):\n"
    "{summary}\n\nConversation:\n{transcript}"
)


def transcript(messages: Sequence[Message]) -> str:
    """A plain-text rendering of messages, for the compaction prompt."""
    lines = []
    for m in messages:
        if m.tool_calls:
            calls = ", ".join(f"{c.name}({json.dumps(c.arguments)})" for c in m.tool_calls)
            lines.append(f"{m.role}: {m.content} [calls {calls}]".strip())
        elif m.role == "tool":
            lines.append(f"tool {m.name}: {m.content}")
        else:
            lines.append(f"{m.role}: {m.content}")
    return "\n".join(lines)


async def load(client: Any, session_id: str) -> dict[str, Any]:
    """The stored memory as plain JSON (a recorded step's output)."""
    memory = await client.sessions.get(session_id)
    return {"summary": memory.summary, "messages": memory.messages, "version": memory.version}


async def save(
    client: Any,
    session_id: str,
    version: int,
    base: int,
    messages: Sequence[Message],
    summary: str | None,
    keep: int,
) -> int:
    """Store the conversation; the new version.

    ``messages[:base]`` is what was loaded (at ``version``), the rest is this run's. On a
    conflict (another run saved meanwhile) the stored conversation is re-read and this
    run's part appended to it — unless it is already there (this save was made once
    before a crash, and its step is being retried).
    """
    new = [m.model_dump(mode="json") for m in messages[base:]]
    stored = [m.model_dump(mode="json") for m in messages[:base]]
    for _ in range(_SAVE_TRIES):
        combined = parse_messages([*stored, *new])
        cut = turn_start(combined, keep)
        try:
            saved = await client.sessions.save(
                session_id,
                [m.model_dump(mode="json") for m in combined[cut:]],
                summary=summary,
                expected_version=version,
            )
            return int(saved.version)
        except SessionConflictError:
            latest = await client.sessions.get(session_id)
            if new and latest.messages[-len(new) :] == new:
                return int(latest.version)  # saved before: a retried step
            stored, version, summary = list(latest.messages), latest.version, latest.summary
    raise SessionConflictError(
        409, "version_conflict", f"session {session_id!r} kept changing ({_SAVE_TRIES} tries)"
    )
