"""Structured logs: formatters, the bound ids, and their isolation between tasks and threads."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from polos import _logs
from polos.errors import ConfigurationError


def _record(
    msg: str = "hello %s", args: tuple[object, ...] = ("world",), **extra: object
) -> logging.LogRecord:
    record = logging.LogRecord("polos.test", logging.INFO, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A logger ``polos.test.capture`` whose records go, filtered and JSON, to a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_logs.JsonFormatter())
    handler.addFilter(_logs.ContextFilter())
    logger = logging.getLogger("polos.test.capture")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_formatter__one_object_with_the_standard_fields() -> None:
    line = _logs.JsonFormatter().format(_record())
    assert "\n" not in line
    out = json.loads(line)
    assert out["level"] == "INFO"
    assert out["logger"] == "polos.test"
    assert out["message"] == "hello world"
    assert out["ts"].endswith("+00:00") and "T" in out["ts"]  # ISO-8601, UTC, ms
    assert "execution_id" not in out


def test_json_formatter__bound_ids_extra_fields_and_exc_info() -> None:
    try:
        raise ValueError("bad thing")
    except ValueError:
        import sys

        exc = sys.exc_info()
    record = _record(count=3, blob=object())
    record.exc_info = exc
    with _logs.log_context(execution_id="e1", workflow_id="wf", attempt=2):
        out = json.loads(_logs.JsonFormatter().format(record))
    assert out["execution_id"] == "e1"
    assert out["workflow_id"] == "wf"
    assert out["attempt"] == 2
    assert out["count"] == 3
    assert isinstance(out["blob"], str)  # not JSON: written as str, the line survives
    assert "ValueError: bad thing" in out["exc_info"]


def test_extra_ids_win_over_bound_ones() -> None:
    with _logs.log_context(execution_id="bound"):
        out = json.loads(_logs.JsonFormatter().format(_record(execution_id="given")))
    assert out["execution_id"] == "given"


def test_text_formatter__appends_the_ids() -> None:
    formatter = _logs.TextFormatter()
    assert formatter.format(_record()).endswith("polos.test: hello world")
    with _logs.log_context(execution_id="e1", step_key="charge#2"):
        line = formatter.format(_record())
    assert line.endswith("hello world [execution_id=e1 step_key=charge#2]")


def test_bind_nests_and_unbind_restores() -> None:
    outer = _logs.bind(execution_id="e1", worker_id="w1", attempt=None)
    assert _logs.current_ids() == {"execution_id": "e1", "worker_id": "w1"}
    inner = _logs.bind(step_key="s1")
    assert _logs.current_ids() == {"execution_id": "e1", "worker_id": "w1", "step_key": "s1"}
    _logs.unbind(inner)
    assert _logs.current_ids() == {"execution_id": "e1", "worker_id": "w1"}
    _logs.unbind(outer)
    assert _logs.current_ids() == {}


async def test_concurrent_tasks_and_their_threads_keep_their_own_ids(
    captured: io.StringIO,
) -> None:
    logger = logging.getLogger("polos.test.capture")

    def in_thread(n: int) -> None:
        logger.info("thread of %d", n)

    async def execution(n: int) -> None:
        token = _logs.bind(execution_id=f"e{n}")
        try:
            await asyncio.sleep(0.01 * (3 - n))  # interleave the tasks
            with _logs.log_context(step_key=f"s{n}"):
                logger.info("step of %d", n)
                await asyncio.to_thread(in_thread, n)
            logger.info("after step of %d", n)
        finally:
            _logs.unbind(token)

    await asyncio.gather(*(execution(n) for n in (1, 2, 3)))
    logger.info("outside")
    lines = _lines(captured)
    assert len(lines) == 10
    for line in lines[:-1]:
        n = str(line["message"])[-1]
        assert line["execution_id"] == f"e{n}"
        if str(line["message"]).startswith("after"):
            assert "step_key" not in line
        else:
            assert line["step_key"] == f"s{n}"
    assert "execution_id" not in lines[-1]


def test_setup_logging__json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_logs.FORMAT_ENV, "json")
    monkeypatch.setenv(_logs.LEVEL_ENV, "warning")
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    try:
        first = _logs.setup_logging(stream=stream)
        second = _logs.setup_logging(stream=stream)  # replaces, never stacks
        assert first not in root.handlers and second in root.handlers
        assert root.level == logging.WARNING
        logging.getLogger("user.code").info("dropped")
        with _logs.log_context(execution_id="e9"):
            logging.getLogger("user.code").warning("kept")
    finally:
        for handler in list(root.handlers):
            if handler.get_name() == "polos":
                root.removeHandler(handler)
        root.setLevel(level)
    (line,) = _lines(stream)
    assert line["message"] == "kept" and line["execution_id"] == "e9"
    assert line["logger"] == "user.code"


def test_setup_logging__refuses_unknown_settings() -> None:
    with pytest.raises(ConfigurationError, match="log format"):
        _logs.setup_logging(fmt="xml")
    with pytest.raises(ConfigurationError, match="log level"):
        _logs.setup_logging(level="chatty")
    assert not any(h.get_name() == "polos" for h in logging.getLogger().handlers)
