"""The Server-Sent Events decoder of the client (``polos.client._sse``)."""

from __future__ import annotations

from polos.client._sse import ServerSentEvent, SSEDecoder, parse_sse


def _lines(text: str) -> list[str]:
    return text.split("\n")


def test_sse__polos_messages_and_keepalives():
    text = (
        ": keepalive\n"
        "\n"
        "id: 1\n"
        "event: event\n"
        'data: {"seq": 1}\n'
        "\n"
        ": keepalive\n"
        "id: 2\n"
        "event: event\n"
        'data: {"seq": 2}\n'
        "\n"
    )
    assert list(parse_sse(_lines(text))) == [
        ServerSentEvent("event", '{"seq": 1}', "1"),
        ServerSentEvent("event", '{"seq": 2}', "2"),
    ]


def test_sse__multi_line_data_default_type_and_field_spacing():
    text = "data:first\ndata:  second\ndata\n\n"
    assert list(parse_sse(_lines(text))) == [ServerSentEvent("message", "first\n second\n", "")]


def test_sse__unfinished_last_message_is_dropped():
    text = "id: 1\ndata: a\n\nid: 2\ndata: b"
    assert [m.data for m in parse_sse(_lines(text))] == ["a"]


def test_sse__id_without_data_moves_the_last_event_id_only():
    decoder = SSEDecoder()
    assert [decoder.feed(line) for line in ("id: 41", "")] == [None, None]
    assert decoder.last_event_id == "41"
    message = decoder.feed("data: x") or decoder.feed("")
    assert message == ServerSentEvent("message", "x", "41")


def test_sse__id_carries_over_and_invalid_ids_are_ignored():
    decoder = SSEDecoder("7")
    for line in ("id: bad\x00id", "data: x"):
        decoder.feed(line)
    assert decoder.feed("") == ServerSentEvent("message", "x", "7")
    assert decoder.last_event_id == "7"


def test_sse__retry_field_and_unknown_fields():
    decoder = SSEDecoder()
    for line in ("retry: 1500", "retry: soon", "foo: bar", "data: y"):
        assert decoder.feed(line) is None
    assert decoder.feed("") == ServerSentEvent("message", "y", "", 1500)
    assert decoder.retry == 1500
    for line in ("data: z", ""):
        message = decoder.feed(line)
    assert message == ServerSentEvent("message", "z", "", None)


def test_sse__byte_order_mark_and_event_type_reset():
    text = "\ufeffevent: first\ndata: 1\n\ndata: 2\n\n"
    assert [(m.event, m.data) for m in parse_sse(_lines(text))] == [
        ("first", "1"),
        ("message", "2"),
    ]
