"""``ctx.emit``: live events outside the step log (in-memory recorder, fake channel)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from polos import PolosClient, Worker, WorkflowContext, workflow
from polos.errors import ConfigurationError, SerializationError
from polos.protocol import Ack, Emit, Task
from polos.testing import MemoryRecorder, run_once
from polos.worker._worker import EMIT_BATCH, _Emitter


class Progress(BaseModel):
    done: int


@workflow(id="emitter")
async def emitter(ctx: WorkflowContext, payload: dict[str, Any]) -> int:
    topic = f"live/{ctx.execution_id}"
    await ctx.emit(topic, "before s1")
    a = await ctx.step.run("s1", lambda: 1)
    await ctx.emit(topic, {"after": "s1"})
    b = await ctx.step.run("s2", lambda: 2)
    await ctx.emit(topic, Progress(done=2))
    return a + b


async def test_emit__items_are_kept_in_order_and_are_not_records():
    recorder = MemoryRecorder()
    outcome, _ = await run_once(emitter, {}, execution_id="e1", recorder=recorder)

    assert outcome.completed and outcome.result == 3
    assert recorder.emitted == [
        ("live/e1", "before s1"),
        ("live/e1", {"after": "s1"}),
        ("live/e1", {"done": 2}),  # JSON, as the SDK stores step outputs
    ]
    assert [(r.key, r.seq) for r in recorder.records] == [("s1", 1), ("s2", 2)]


async def test_emit__a_replay_does_not_emit_again_for_the_part_it_replays():
    _, first = await run_once(emitter, {}, execution_id="e1")

    # Crashed after s1: the new attempt emits afresh only after the replayed s1.
    outcome, again = await run_once(
        emitter, {}, execution_id="e1", history=first.records[:1], attempt=2
    )
    assert outcome.completed
    assert [data for _, data in again.emitted] == [{"after": "s1"}, {"done": 2}]
    assert [r.key for r in again.records] == ["s2"]

    # Everything recorded: only what follows the last recorded step is emitted.
    _, replayed = await run_once(emitter, {}, execution_id="e1", history=first.records, attempt=2)
    assert [data for _, data in replayed.emitted] == [{"done": 2}]
    assert replayed.records == []


@workflow(id="emit_in_steps")
async def emit_in_steps(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    async def stream(n: int) -> str:
        for i in range(3):
            await ctx.emit("tokens", f"{n}.{i}")
        return f"reply {n}"

    first = await ctx.step.run("llm", stream, 1)
    second = await ctx.step.run("llm", stream, 2)
    return first + " " + second


async def test_emit__from_a_step_function_streams_only_when_the_step_really_runs():
    _, first = await run_once(emit_in_steps, {})
    assert [d for _, d in first.emitted] == ["1.0", "1.1", "1.2", "2.0", "2.1", "2.2"]

    outcome, again = await run_once(emit_in_steps, {}, history=first.records[:1], attempt=2)
    assert outcome.result == "reply 1 reply 2"
    assert [d for _, d in again.emitted] == ["2.0", "2.1", "2.2"]


async def test_emit__replay_tracks_repeated_step_keys():
    @workflow(id="ticks")
    async def ticks(ctx: WorkflowContext) -> None:
        for i in range(4):
            await ctx.step.run("tick", lambda: None)  # tick, tick#2, tick#3, tick#4
            await ctx.emit("t", i)

    _, first = await run_once(ticks)
    assert [d for _, d in first.emitted] == [0, 1, 2, 3]

    _, again = await run_once(ticks, history=first.records[:2], attempt=2)
    assert [d for _, d in again.emitted] == [1, 2, 3]  # from after tick#2, the last recorded


async def test_emit__does_not_change_step_keys_or_seqs():
    @workflow(id="plain")
    async def plain(ctx: WorkflowContext) -> None:
        await ctx.step.run("a", lambda: 1)
        ctx.step.uuid("id")
        await ctx.step.run("b", lambda: 2)

    @workflow(id="chatty")
    async def chatty(ctx: WorkflowContext) -> None:
        await ctx.emit("t", 0)
        await ctx.step.run("a", lambda: 1)
        await ctx.emit("t", 1)
        ctx.step.uuid("id")
        await ctx.emit("t", 2)
        await ctx.step.run("b", lambda: 2)

    _, quiet = await run_once(plain)
    _, loud = await run_once(chatty)
    shape = [(r.key, r.seq, r.kind) for r in quiet.records]
    assert [(r.key, r.seq, r.kind) for r in loud.records] == shape
    assert len(loud.emitted) == 3


@pytest.mark.parametrize("topic", ["", "has space", "x" * 301, 42])
async def test_emit__a_bad_topic_raises_configuration_error(topic):
    @workflow(id="bad_topic")
    async def bad_topic(ctx: WorkflowContext) -> None:
        await ctx.emit(topic, "x")

    outcome, recorder = await run_once(bad_topic)
    assert not outcome.completed
    assert outcome.error is not None
    assert outcome.error.type == "polos.errors.ConfigurationError"
    assert "invalid topic" in outcome.error.message
    assert recorder.emitted == []


async def test_emit__data_that_is_not_json_raises_serialization_error():
    caught: list[BaseException] = []

    @workflow(id="bad_data")
    async def bad_data(ctx: WorkflowContext) -> str:
        try:
            await ctx.emit("t", object())
        except SerializationError as exc:
            caught.append(exc)
        return "went on"

    outcome, recorder = await run_once(bad_data)
    assert outcome.result == "went on"
    assert len(caught) == 1
    assert "ctx.emit('t')" in str(caught[0])
    assert recorder.emitted == []


async def test_emit_sync__from_a_sync_workflow_and_from_a_sync_step_function():
    @workflow(id="sync_wf")
    def sync_wf(ctx: WorkflowContext) -> int:
        ctx.emit_sync("t", "start")
        value = ctx.step.run_sync("s", lambda: 5)
        ctx.emit_sync("t", "end")
        return value

    outcome, recorder = await run_once(sync_wf)
    assert outcome.result == 5
    assert recorder.emitted == [("t", "start"), ("t", "end")]

    def blocking_call(ctx: WorkflowContext) -> str:
        for i in range(2):
            ctx.emit_sync("t", i)  # e.g. a sync SDK streaming a model's answer
        return "done"

    @workflow(id="async_wf")
    async def async_wf(ctx: WorkflowContext) -> str:
        return await ctx.step.run("call", blocking_call, ctx)

    outcome, recorder = await run_once(async_wf)
    assert outcome.result == "done"
    assert recorder.emitted == [("t", 0), ("t", 1)]


async def test_emit_sync__in_async_code_is_refused_and_its_checks_run_in_the_thread():
    @workflow(id="wrong_form")
    async def wrong_form(ctx: WorkflowContext) -> None:
        ctx.emit_sync("t", "x")

    outcome, _ = await run_once(wrong_form)
    assert outcome.error is not None and "await ctx.emit" in outcome.error.message

    @workflow(id="sync_bad")
    def sync_bad(ctx: WorkflowContext) -> None:
        with pytest.raises(ConfigurationError):
            ctx.emit_sync("bad topic", 1)
        with pytest.raises(SerializationError):
            ctx.emit_sync("t", object())

    outcome, recorder = await run_once(sync_bad)
    assert outcome.completed and recorder.emitted == []


# ---------------------------------------------------------------------- the worker's coalescing


class PostChannel:
    """What ``_Emitter`` and ``Worker`` use of a channel: requests, posts and ``connected``."""

    def __init__(self, *, up: bool = True) -> None:
        self.sent: list[object] = []
        self.up = up
        self.connected = up
        self.features = frozenset({"emit"})
        self._req = 0

    async def request(self, build):
        self._req += 1
        message = build(self._req)
        self.sent.append(message)
        if getattr(message, "publish", None) is not None:  # what the orchestrator answers
            meta = {"id": "ev", "topic": message.publish.topic, "seq": 1, "created_at": 0}
            return Ack(req=self._req, value=meta)
        return Ack(req=self._req)

    async def post(self, message: Emit) -> bool:
        await asyncio.sleep(0)  # a real send yields: order must survive it
        if not self.up:
            return False
        self.sent.append(message)
        return True


def _items(sent: list[object], topic: str | None = None) -> list[Any]:
    return [
        item
        for m in sent
        if isinstance(m, Emit) and (topic is None or m.topic == topic)
        for item in m.items
    ]


async def test_emitter__one_loop_turn_makes_one_message_per_topic():
    channel = PostChannel()
    buffer = _Emitter(channel, "e1", 3)  # type: ignore[arg-type]
    for i in range(5):
        buffer.add("a", [i])
        buffer.add("b", [-i])
    await buffer.drain()

    assert [(m.topic, m.items, m.epoch) for m in channel.sent] == [  # type: ignore[attr-defined]
        ("a", [0, 1, 2, 3, 4], 3),
        ("b", [0, -1, -2, -3, -4], 3),
    ]


async def test_emitter__a_stream_is_batched_kept_in_order_and_capped_per_message():
    channel = PostChannel()
    buffer = _Emitter(channel, "e1", 1)  # type: ignore[arg-type]
    for i in range(500):
        buffer.add("t", [i])
        if i % 7 == 0:
            await asyncio.sleep(0)  # emits spread over loop turns, like streamed chunks
    await buffer.drain()

    messages = [m for m in channel.sent if isinstance(m, Emit)]
    assert _items(channel.sent) == list(range(500))
    assert all(1 <= len(m.items) <= EMIT_BATCH for m in messages)
    assert len(messages) < 500 // 7  # coalesced across loop turns, not one per emit


async def test_emitter__a_large_batch_is_split_into_messages_of_at_most_emit_batch():
    channel = PostChannel()
    buffer = _Emitter(channel, "e1", 1)  # type: ignore[arg-type]
    buffer.add("t", list(range(EMIT_BATCH * 2 + 5)))  # a recorder may be given many at once
    await buffer.drain()

    sizes = [len(m.items) for m in channel.sent if isinstance(m, Emit)]
    assert sizes == [EMIT_BATCH, EMIT_BATCH, 5]
    assert _items(channel.sent) == list(range(EMIT_BATCH * 2 + 5))


async def test_emitter__drops_when_down_and_after_close_without_raising():
    down = PostChannel(up=False)
    buffer = _Emitter(down, "e1", 1)  # type: ignore[arg-type]
    buffer.add("t", [1, 2])
    await buffer.drain()
    assert down.sent == [] and buffer.dropped == 2

    up = PostChannel()
    buffer = _Emitter(up, "e1", 1)  # type: ignore[arg-type]
    buffer.add("t", [1])
    buffer.close()
    buffer.add("t", [2])  # e.g. from a task the workflow left running
    await buffer.drain()
    assert _items(up.sent) == [1] and buffer.dropped == 1


@workflow(id="streamer")
async def streamer(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    for i in range(payload["n"]):
        await ctx.emit("live", i)
        if i == payload["n"] // 2:
            await ctx.step.run("middle", lambda: "m")
    await ctx.step.publish_event("done", "live", "the end")
    await ctx.emit("live", "after publish")
    return "ok"


async def test_worker__emits_leave_before_the_publish_step_and_before_the_result():
    worker = Worker(client=PolosClient("http://127.0.0.1:9"), workflows=[streamer])
    channel = PostChannel()
    worker._channel = channel  # type: ignore[assignment]
    worker._on_task(
        Task(execution_id="e1", workflow_id="streamer", epoch=1, attempt=1, payload={"n": 100})
    )
    await asyncio.wait_for(worker._running["e1"].job, 5)  # type: ignore[arg-type]

    kinds = [type(m).__name__ for m in channel.sent]
    publish_at = next(
        i for i, m in enumerate(channel.sent) if getattr(m, "publish", None) is not None
    )
    assert _items(channel.sent[:publish_at]) == list(range(100))
    assert _items(channel.sent[publish_at:]) == ["after publish"]
    assert kinds[-1] == "Complete"
    assert kinds.count("RecordStep") == 2  # "middle" and the publish: emits are not steps
