"""What ``FakeLLMServer`` says: the bodies and SSE streams of the three APIs.

Each builder turns one :class:`FakeReply` (resolved into an :class:`Answer`: ids, usage
and tool calls fixed) into exactly what the real API would send, in the shapes the
``openai`` and ``anthropic`` clients parse: Chat Completions chunks ending ``[DONE]``,
Responses events (``response.created`` ... ``response.completed``), Anthropic events
(``message_start`` ... ``message_stop``).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from polos.llm import ToolCall

Api = Literal["chat", "responses", "anthropic"]


@dataclass
class FakeReply:
    """What the server answers to one request.

    Attributes:
        text: the answer's text (streamed word by word).
        tool_calls: ``(name, arguments)`` pairs or ``ToolCall`` objects; pairs get ids
            ``call_N`` (OpenAI) or ``toolu_N`` (Anthropic).
        reasoning: thinking returned as a Responses reasoning summary, an Anthropic
            ``thinking`` block, or a Chat Completions ``reasoning_content`` field.
        reasoning_signature: the Anthropic thinking signature (default ``sig_N``).
        usage: ``(input, output)`` tokens; input counts every prompt token, cached or
            not (for Anthropic the uncached part is reported as ``input_tokens``).
            None: one token per word.
        cached_tokens / cache_creation_tokens / reasoning_tokens: usage details.
        status: the HTTP status; not 200 sends an error (``error_body`` or the API's
            usual error body for that status).
        headers: extra response headers (``retry-after``...).
        delay: seconds to wait before answering.
        finish_reason: the API's own value; None: the natural one.
    """

    text: str = ""
    tool_calls: Sequence[ToolCall | tuple[str, dict[str, Any]]] = ()
    reasoning: str | None = None
    reasoning_signature: str | None = None
    usage: tuple[int, int] | None = None
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    status: int = 200
    error_body: Any = None
    headers: dict[str, str] | None = None
    delay: float = 0.0
    finish_reason: str | None = None


@dataclass(frozen=True)
class FakeRequest:
    """One request the server received.

    Attributes:
        api: ``chat``, ``responses`` or ``anthropic``.
        body: the JSON body as sent.
        headers: the HTTP headers (lower-case names).
        messages: the conversation as ``(role, text)`` pairs: system prompt first,
            tool results as ``("tool", output)``, tool calls not included.
        tool_results: how many tool results the conversation holds.
    """

    api: Api
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    messages: list[tuple[str, str]] = field(default_factory=list)
    tool_results: int = 0

    @property
    def stream(self) -> bool:
        """Whether the client asked for a stream."""
        return bool(self.body.get("stream"))

    @property
    def model(self) -> str:
        """The model asked for."""
        return str(self.body.get("model", ""))


def _text_of(content: Any) -> str:
    """The text of a message content: a string or a list of parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    return ""


def normalise(api: Api, body: dict[str, Any]) -> tuple[list[tuple[str, str]], int]:
    """``(messages, tool_results)`` of a request body: see :class:`FakeRequest`."""
    messages: list[tuple[str, str]] = []
    results = 0
    if api == "chat":
        for message in body.get("messages") or []:
            role = message.get("role", "")
            results += role == "tool"
            messages.append((role, _text_of(message.get("content"))))
    elif api == "responses":
        if body.get("instructions"):
            messages.append(("system", str(body["instructions"])))
        items = body.get("input")
        for item in [{"role": "user", "content": items}] if isinstance(items, str) else items or []:
            kind = item.get("type", "message")
            if kind == "message":
                messages.append((item.get("role", ""), _text_of(item.get("content"))))
            elif kind == "function_call_output":
                results += 1
                messages.append(("tool", _text_of(item.get("output"))))
    else:
        if body.get("system"):
            messages.append(("system", _text_of(body["system"])))
        for message in body.get("messages") or []:
            content = message.get("content")
            blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
            text = []
            for block in blocks:
                if block.get("type") == "tool_result":
                    results += 1
                    messages.append(("tool", _text_of(block.get("content"))))
                elif block.get("type") == "text":
                    text.append(block.get("text") or "")
            if text:
                messages.append((message.get("role", ""), "".join(text)))
    return messages, results


def _words(text: str) -> list[str]:
    """``text`` in pieces of one word (with its following space) that join back to it."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece] if text else []


def _thirds(text: str) -> list[str]:
    size = max(1, -(-len(text) // 3))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class Answer:
    """One reply resolved for one request: ids, usage and tool calls fixed."""

    def __init__(self, next_id: Callable[[], int], request: FakeRequest, reply: FakeReply) -> None:
        self.reply = reply
        self.request = request
        self.n = next_id()
        prefix = "toolu" if request.api == "anthropic" else "call"
        self.calls: list[ToolCall] = []
        for call in reply.tool_calls:
            if isinstance(call, ToolCall):
                self.calls.append(call)
            else:
                number = next_id()
                self.calls.append(
                    ToolCall(id=f"{prefix}_{number}", name=call[0], arguments=call[1])
                )
        words_in = sum(len(text.split()) for _, text in request.messages)
        words_out = len(reply.text.split()) + len((reply.reasoning or "").split())
        self.input_tokens, self.output_tokens = reply.usage or (words_in, max(words_out, 1))
        self.model = request.model or "fake-model"
        self.created = int(time.time())


def _chat_usage(a: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": a.input_tokens,
        "completion_tokens": a.output_tokens,
        "total_tokens": a.input_tokens + a.output_tokens,
        "prompt_tokens_details": {"cached_tokens": a.reply.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": a.reply.reasoning_tokens},
    }


def _chat_finish(a: Answer) -> str:
    return a.reply.finish_reason or ("tool_calls" if a.calls else "stop")


def chat_completion(a: Answer) -> dict[str, Any]:
    """A ``chat.completion`` object (non-streaming Chat Completions)."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": a.reply.text or None,
        "refusal": None,
    }
    if a.calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in a.calls
        ]
    if a.reply.reasoning:
        message["reasoning_content"] = a.reply.reasoning
    return {
        "id": f"chatcmpl-{a.n}",
        "object": "chat.completion",
        "created": a.created,
        "model": a.model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": _chat_finish(a), "logprobs": None}
        ],
        "usage": _chat_usage(a),
    }


def chat_chunks(a: Answer) -> Iterable[bytes]:
    """``chat.completion.chunk`` SSE events, usage last if asked, then ``[DONE]``."""
    include_usage = bool((a.request.body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data: dict[str, Any] = {
            "id": f"chatcmpl-{a.n}",
            "object": "chat.completion.chunk",
            "created": a.created,
            "model": a.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if include_usage:
            data["usage"] = None
        return _sse(data)

    yield chunk({"role": "assistant", "content": ""})
    for piece in _words(a.reply.reasoning or ""):
        yield chunk({"reasoning_content": piece})
    for piece in _words(a.reply.text):
        yield chunk({"content": piece})
    for index, call in enumerate(a.calls):
        head = {"index": index, "id": call.id, "type": "function"}
        yield chunk({"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]})
        for piece in _thirds(json.dumps(call.arguments)):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, _chat_finish(a))
    if include_usage:
        last = {"id": f"chatcmpl-{a.n}", "object": "chat.completion.chunk", "created": a.created}
        yield _sse({**last, "model": a.model, "choices": [], "usage": _chat_usage(a)})
    yield _sse("[DONE]")


def _responses_items(a: Answer) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if a.reply.reasoning:
        item: dict[str, Any] = {
            "id": f"rs_{a.n}",
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": a.reply.reasoning}],
        }
        if "reasoning.encrypted_content" in (a.request.body.get("include") or []):
            item["encrypted_content"] = f"encrypted-{a.n}"
        items.append(item)
    if a.reply.text or not a.calls:
        items.append(
            {
                "id": f"msg_{a.n}",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": a.reply.text, "annotations": []}],
            }
        )
    items.extend(
        {
            "id": f"fc_{call.id}",
            "type": "function_call",
            "call_id": call.id,
            "name": call.name,
            "arguments": json.dumps(call.arguments),
            "status": "completed",
        }
        for call in a.calls
    )
    return items


def _response_object(a: Answer, *, done: bool) -> dict[str, Any]:
    body = a.request.body
    incomplete = a.reply.finish_reason == "max_output_tokens"
    return {
        "id": f"resp_{a.n}",
        "object": "response",
        "created_at": a.created,
        "status": ("incomplete" if incomplete else "completed") if done else "in_progress",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete and done else None,
        "error": None,
        "model": a.model,
        "instructions": body.get("instructions"),
        "output": _responses_items(a) if done else [],
        "parallel_tool_calls": True,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "temperature": body.get("temperature"),
        "max_output_tokens": body.get("max_output_tokens"),
        "text": body.get("text") or {"format": {"type": "text"}},
        "usage": {
            "input_tokens": a.input_tokens,
            "input_tokens_details": {
                "cached_tokens": a.reply.cached_tokens,
                "cache_write_tokens": a.reply.cache_creation_tokens,
            },
            "output_tokens": a.output_tokens,
            "output_tokens_details": {"reasoning_tokens": a.reply.reasoning_tokens},
            "total_tokens": a.input_tokens + a.output_tokens,
        }
        if done
        else None,
    }


def responses_events(a: Answer) -> Iterable[bytes]:
    """Responses SSE events, ``response.created`` to ``response.completed``."""
    sequence = itertools.count()

    def event(kind: str, **data: Any) -> bytes:
        return _sse({"type": kind, "sequence_number": next(sequence), **data}, kind)

    yield event("response.created", response=_response_object(a, done=False))
    yield event("response.in_progress", response=_response_object(a, done=False))
    for index, item in enumerate(_responses_items(a)):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "reasoning":
            yield event(
                "response.output_item.added", output_index=index, item={**item, "summary": []}
            )
            text = item["summary"][0]["text"]
            part: dict[str, Any] = {"type": "summary_text", "text": ""}
            yield event(
                "response.reasoning_summary_part.added", **where, summary_index=0, part=part
            )
            for piece in _words(text):
                yield event(
                    "response.reasoning_summary_text.delta", **where, summary_index=0, delta=piece
                )
            yield event("response.reasoning_summary_text.done", **where, summary_index=0, text=text)
            part = {"type": "summary_text", "text": text}
            yield event("response.reasoning_summary_part.done", **where, summary_index=0, part=part)
        elif item["type"] == "message":
            started: dict[str, Any] = {**item, "status": "in_progress", "content": []}
            yield event("response.output_item.added", output_index=index, item=started)
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": "", "annotations": []}
            yield event("response.content_part.added", **where, content_index=0, part=part)
            for piece in _words(text):
                yield event(
                    "response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[]
                )
            yield event(
                "response.output_text.done", **where, content_index=0, text=text, logprobs=[]
            )
            part = {"type": "output_text", "text": text, "annotations": []}
            yield event("response.content_part.done", **where, content_index=0, part=part)
        else:
            started = {**item, "arguments": "", "status": "in_progress"}
            yield event("response.output_item.added", output_index=index, item=started)
            for piece in _thirds(item["arguments"]):
                yield event("response.function_call_arguments.delta", **where, delta=piece)
            yield event(
                "response.function_call_arguments.done",
                **where,
                name=item["name"],
                arguments=item["arguments"],
            )
        yield event("response.output_item.done", output_index=index, item=item)
    final = _response_object(a, done=True)
    kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    yield event(kind, response=final)


def _anthropic_usage(a: Answer) -> dict[str, Any]:
    cached, created = a.reply.cached_tokens, a.reply.cache_creation_tokens
    usage: dict[str, Any] = {
        "input_tokens": max(a.input_tokens - cached - created, 0),
        "output_tokens": a.output_tokens,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": created,
    }
    if a.reply.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": a.reply.reasoning_tokens}
    return usage


def _anthropic_blocks(a: Answer) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if a.reply.reasoning:
        signature = a.reply.reasoning_signature or f"sig_{a.n}"
        blocks.append({"type": "thinking", "thinking": a.reply.reasoning, "signature": signature})
    if a.reply.text or not a.calls:
        blocks.append({"type": "text", "text": a.reply.text})
    blocks.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in a.calls
    )
    return blocks


def anthropic_message(a: Answer, *, content: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An Anthropic ``message`` (``content`` given: the empty one of ``message_start``)."""
    return {
        "id": f"msg_{a.n}",
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": _anthropic_blocks(a) if content is None else content,
        "stop_reason": None
        if content is not None
        else (a.reply.finish_reason or ("tool_use" if a.calls else "end_turn")),
        "stop_sequence": None,
        "usage": _anthropic_usage(a),
    }


def anthropic_events(a: Answer) -> Iterable[bytes]:
    """Anthropic SSE events, ``message_start`` to ``message_stop``."""

    def event(kind: str, **data: Any) -> bytes:
        return _sse({"type": kind, **data}, kind)

    start = anthropic_message(a, content=[])
    start["usage"] = {**start["usage"], "output_tokens": 1}
    yield event("message_start", message=start)
    yield event("ping")
    for index, block in enumerate(_anthropic_blocks(a)):
        if block["type"] == "thinking":
            yield event(
                "content_block_start",
                index=index,
                content_block={"type": "thinking", "thinking": "", "signature": ""},
            )
            for piece in _words(block["thinking"]):
                delta = {"type": "thinking_delta", "thinking": piece}
                yield event("content_block_delta", index=index, delta=delta)
            delta = {"type": "signature_delta", "signature": block["signature"]}
            yield event("content_block_delta", index=index, delta=delta)
        elif block["type"] == "text":
            start_block = {"type": "text", "text": ""}
            yield event("content_block_start", index=index, content_block=start_block)
            for piece in _words(block["text"]):
                delta = {"type": "text_delta", "text": piece}
                yield event("content_block_delta", index=index, delta=delta)
        else:
            yield event("content_block_start", index=index, content_block={**block, "input": {}})
            for piece in _thirds(json.dumps(block["input"])):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield event("content_block_delta", index=index, delta=delta)
        yield event("content_block_stop", index=index)
    final = anthropic_message(a)
    stop = {"stop_reason": final["stop_reason"], "stop_sequence": None}
    yield event("message_delta", delta=stop, usage=_anthropic_usage(a))
    yield event("message_stop")


def responses_body(a: Answer) -> dict[str, Any]:
    """A completed ``response`` object (non-streaming Responses)."""
    return _response_object(a, done=True)
