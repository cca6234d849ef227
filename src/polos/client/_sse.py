"""A small decoder for Server-Sent Events (the ``text/event-stream`` format).

It follows the WHATWG "interpreting an event stream" rules, line by line: fields
``event``, ``data`` (several lines are joined with ``\\n``), ``id`` and ``retry``;
lines starting with ``:`` are comments (keepalives); a blank line dispatches the
message. A message without data is not dispatched, but its ``id`` still becomes
the stream's last event id, as in a browser's ``EventSource``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched message of an event stream."""

    event: str
    """The event type (``message`` when the message had no ``event`` field)."""
    data: str
    """The data lines, joined with ``\\n``."""
    id: str
    """The last event id of the stream when this message was dispatched (``""``: none)."""
    retry: int | None = None
    """The reconnection time in ms, when the message set one."""


class SSEDecoder:
    """Turns the lines of an event stream into :class:`ServerSentEvent` messages.

    Feed it every line, without its line terminator; :meth:`feed` returns a message
    when the line completes one. :attr:`last_event_id` is the id to send as
    ``Last-Event-ID`` when reconnecting.
    """

    def __init__(self, last_event_id: str = "") -> None:
        self.last_event_id = last_event_id
        """The last event id seen (carried over dispatches, as the spec says)."""
        self.retry: int | None = None
        """The last reconnection time (ms) the server asked for."""
        self._event = ""
        self._data: list[str] = []
        self._id = last_event_id
        self._retry: int | None = None
        self._first = True

    def feed(self, line: str) -> ServerSentEvent | None:
        """Process one line; the completed message, if this line dispatched one."""
        if self._first:
            self._first = False
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: keepalive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\x00" not in value:
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = self.retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        self.last_event_id = self._id
        event, data, retry = self._event, self._data, self._retry
        self._event, self._data, self._retry = "", [], None
        if not data:
            return None
        return ServerSentEvent(event or "message", "\n".join(data), self.last_event_id, retry)


def parse_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """The messages of a whole stream given as lines (an unfinished last message is dropped)."""
    decoder = SSEDecoder()
    for line in lines:
        message = decoder.feed(line)
        if message is not None:
            yield message
