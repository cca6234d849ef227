"""``FakeLLMServer``: a local HTTP server speaking the OpenAI and Anthropic APIs.

Tests point the real ``openai`` / ``anthropic`` clients at it (``base_url=server.url`` or
``server.anthropic_url``) and script what it answers, so the adapters are exercised over
real HTTP, SSE included, without network or keys::

    with FakeLLMServer() as server:
        server.script([FakeReply(tool_calls=[("add", {"a": 1, "b": 2})]), FakeReply("3")])
        provider = create_provider("openai", base_url=server.url, api_key="test")
        ...
        assert server.requests[1].tool_results == 1

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/responses`` and ``POST /v1/messages``,
each non-streaming and streaming (``"stream": true``) with the event sequences of the
real APIs. Run it alone with ``python -m polos.testing._fake_llm --port N --script FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ._fake_llm_wire import (
    ANTHROPIC_ERRORS,
    OPENAI_ERRORS,
    Answer,
    Api,
    FakeReply,
    FakeRequest,
    anthropic_events,
    anthropic_message,
    chat_chunks,
    chat_completion,
    normalise,
    responses_body,
    responses_events,
)

__all__ = ["FakeLLMServer", "FakeReply", "FakeRequest"]

Responder = Callable[[FakeRequest], FakeReply | str]


def _error_response(api: Api, reply: FakeReply) -> Response:
    status = reply.status
    headers = reply.headers or {}
    if isinstance(reply.error_body, str):
        return Response(reply.error_body, status_code=status, headers=headers)
    body = reply.error_body
    if body is None:
        message = f"fake error {status}"
        if api == "anthropic":
            kind = ANTHROPIC_ERRORS.get(status, "api_error")
            body = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            kind, code = OPENAI_ERRORS.get(status, ("server_error", None))
            body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class FakeLLMServer:
    """A fake OpenAI + Anthropic API on 127.0.0.1, served by uvicorn in a thread.

    Script it with :meth:`script` (replies consumed in order; a ``str`` is a text reply)
    or :meth:`respond_with` (a function of the :class:`FakeRequest`). A request with
    nothing left to answer gets HTTP 400 ``no scripted reply left``. Use it as a context
    manager, or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self, replies: Iterable[FakeReply | str] = (), *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._queue: list[FakeReply | str] = list(replies)
        self._responder: Responder | None = None
        self._requests: list[FakeRequest] = []
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/messages", self._messages, methods=["POST"]),
            ]
        )

    # -- scripting and inspection ------------------------------------------------------

    def script(self, replies: Iterable[FakeReply | str]) -> None:
        """Answer the next requests with ``replies``, in order (replaces any script)."""
        with self._lock:
            self._queue = list(replies)
            self._responder = None

    def respond_with(self, responder: Responder) -> None:
        """Answer every request with ``responder(request)`` (replaces any script)."""
        with self._lock:
            self._queue = []
            self._responder = responder

    def reset(self) -> None:
        """Forget the script and the recorded requests."""
        with self._lock:
            self._queue = []
            self._responder = None
            self._requests = []

    @property
    def requests(self) -> list[FakeRequest]:
        """Every request received so far, in order."""
        with self._lock:
            return list(self._requests)

    def count(self, api: Api | None = None) -> int:
        """How many requests arrived (for one API, or in all)."""
        with self._lock:
            return sum(1 for r in self._requests if api is None or r.api == api)

    @property
    def root(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI ``base_url``: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.root}/v1"

    @property
    def anthropic_url(self) -> str:
        """The Anthropic ``base_url`` (the client adds ``/v1/messages``)."""
        return self.root

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    # -- HTTP --------------------------------------------------------------------------

    async def _handle(self, api: Api, request: Request) -> Response:
        body = await request.json()
        messages, results = normalise(api, body)
        fake = FakeRequest(
            api=api,
            body=body,
            headers={k.lower(): v for k, v in request.headers.items()},
            messages=messages,
            tool_results=results,
        )
        with self._lock:
            self._requests.append(fake)
            responder = self._responder
            reply: FakeReply | str | None = self._queue.pop(0) if self._queue else None
        if responder is not None:
            reply = responder(fake)
        if reply is None:
            reply = FakeReply(
                status=400, error_body={"error": {"message": "no scripted reply left"}}
            )
            if api == "anthropic":
                reply.error_body = {"type": "error", "error": {**reply.error_body["error"]}}
        if isinstance(reply, str):
            reply = FakeReply(text=reply)
        if reply.delay > 0:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return _error_response(api, reply)
        answer = Answer(self._next_id, fake, reply)
        if not fake.stream:
            if api == "chat":
                return JSONResponse(chat_completion(answer), headers=reply.headers)
            if api == "responses":
                return JSONResponse(responses_body(answer), headers=reply.headers)
            return JSONResponse(anthropic_message(answer), headers=reply.headers)
        events = {"chat": chat_chunks, "responses": responses_events, "anthropic": anthropic_events}

        async def body_stream() -> AsyncIterator[bytes]:
            # Yielding to the loop between events makes each one its own network write,
            # as from a real server, so clients do see a stream.
            for chunk in events[api](answer):
                yield chunk
                await asyncio.sleep(0)

        return StreamingResponse(
            body_stream(), media_type="text/event-stream", headers=reply.headers
        )

    async def _chat(self, request: Request) -> Response:
        return await self._handle("chat", request)

    async def _responses(self, request: Request) -> Response:
        return await self._handle("responses", request)

    async def _messages(self, request: Request) -> Response:
        return await self._handle("anthropic", request)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        """Serve in a background thread; returns when the server accepts connections."""
        if self._thread is not None:
            return self
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so, and
        # without it every keep-alive request waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-llm-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("FakeLLMServer did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _load_script(path: str) -> list[FakeReply | str]:
    """A JSON list of strings or objects with :class:`FakeReply` fields."""
    with open(path, encoding="utf-8") as file:
        entries = json.load(file)
    replies: list[FakeReply | str] = []
    for entry in entries:
        if isinstance(entry, str):
            replies.append(entry)
        else:
            calls = [(c["name"], c.get("arguments", {})) for c in entry.pop("tool_calls", [])]
            usage = tuple(entry.pop("usage")) if "usage" in entry else None
            replies.append(FakeReply(**entry, tool_calls=calls, usage=usage))
    return replies


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m polos.testing._fake_llm --port N [--script FILE.json]``."""
    parser = argparse.ArgumentParser(description="A fake OpenAI/Anthropic API for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--script", help="JSON list of replies (strings or FakeReply fields)")
    args = parser.parse_args(argv)
    server = FakeLLMServer(
        _load_script(args.script) if args.script else (), host=args.host, port=args.port
    )
    server.start()
    print(f"fake LLM server on {server.root} (OpenAI base_url {server.url})", flush=True)  # noqa: T201
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
