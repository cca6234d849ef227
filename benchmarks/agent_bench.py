"""Platform overhead of an agent turn: Polos and DBOS on SQLite and PostgreSQL, beside an
agent loop without durability, all against a fake model that answers at once.

Usage::

    python benchmarks/agent_bench.py --quick     # 20 runs of each variant (~1 min)
    python benchmarks/agent_bench.py             # 60 runs of each variant (~2-3 min)
    python benchmarks/agent_bench.py --store sqlite|postgres|both   # default: both
    python benchmarks/agent_bench.py --pg-url postgresql://postgres@127.0.0.1:5432/postgres
    python benchmarks/agent_bench.py --turns 5   # model calls per run (default 5)

The agent: a system prompt and one tool (``lookup``, returns at once). A run of K turns
is K model calls, the first K - 1 of which ask for one tool call each; the last answers
with text. The model is ``polos.testing.FakeLLMServer`` in its own process
(``workers/agent_fake_llm.py``), spoken to by the same adapter in every variant:
``create_provider("openai", model_api="chat_completions", base_url=..., api_key="x")``.

Variants (``workers/agent_shared.py`` holds what they share):

* ``baseline``: no durability. The agent loop in this process (``agent_shared.agent_loop``,
  the Polos loop without guardrails, hooks and stop conditions), model and tool called
  directly.
* ``polos-memory``: the real ``polos.Agent`` run in this process by
  ``polos.testing.run_once`` with an in-memory step log: the SDK's loop and step
  machinery without a store, worker or network (a diagnostic row).
* ``polos-sqlite`` / ``polos-postgres``: a real orchestrator (``ServerProcess``) on a fresh
  database and one worker (``workers/agent_worker.py``); ``await agent.run(client, ...)``,
  timed in this process: invoke, dispatch, K ``llm`` steps and K - 1 ``tool`` steps each
  recorded durably, completion, result.
* ``dbos-sqlite`` / ``dbos-postgres``: the loop as a ``@DBOS.workflow()`` whose model calls
  and tool calls are ``@DBOS.step()`` (``workers/dbos_agent_app.py``, its own process per
  store, fresh system database), timed inside that process around the workflow call (DBOS
  is a library: no invoke or dispatch).
* ``pydantic-ai`` and ``pydantic-ai-dbos-<store>`` (only when pydantic-ai is installed:
  ``pip install 'pydantic-ai-slim[openai]'``, a benchmark-only dependency): the same agent
  in pydantic-ai with its own OpenAI model class, plain (in this process) and with its
  ``DBOSDurability`` capability inside a DBOS workflow (in the DBOS process).

Every process lives for the whole run. Two phases, after warm-up runs of each variant:
**interleaved** (one run of each variant per round, in a shuffled order, so that drift of
the machine hits all of them alike; a variant's processes have then sat idle ~0.5 s when
its run starts) and **back to back** (each variant's runs in one block, as the other
benchmarks measure latency). Reported per variant and phase: the run's wall time (median,
p90); **per turn** = run median / K; **overhead per turn** = (run median - baseline run
median) / K, the platform's cost per model call + tool call, fixed per-run costs spread
over the turns. From ``time.perf_counter()`` stamps taken at the start and end of every
model call and tool call, in the process that makes them (CLOCK_MONOTONIC on Linux, the
same clock in every process): the time from a model call's end to the tool call's start
(the ``llm`` step's record plus the loop's own code), from a tool call's end to the next
model call's start (the ``tool`` step's record), and the run's start and end (the call to
the first model call; the last answer to the result in the caller).

For Polos, the worker also stamps its attempt and every request it sends the orchestrator
(``AGENT_BENCH_BREAKDOWN``, see ``workers/agent_worker.py``; ``--no-breakdown`` turns it
off): a second table splits a run into invoke + dispatch, step records (round trip of one
``RecordStep``), loop code, ``Complete`` and the result's way back to the caller. Before
measuring, a loopback TCP echo to an idle process tells what waking an idle process costs
on this machine (recorded with the results).

Target (agents issue): Polos overhead per turn < 5 ms (median) on SQLite and PostgreSQL.
Prints the tables and writes ``benchmarks/results/agent-latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "workers"))

from agent_shared import (
    RUN_KEY,
    STAMPS,
    agent_loop,
    call_lookup,
    make_agent,
    make_provider,
    make_pydantic_ai_agent,
    prompt,
    pydantic_ai_available,
)
from bench_common import DEFAULT_PG_URL, STORES, WORKERS, Store, percentile

import polos
from polos import PolosClient
from polos.testing import ServerProcess, WorkerProcess, free_port, run_once, wait_for_workers

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STORE_TITLES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
MODES: dict[str, dict[str, int]] = {
    "quick": {"runs": 20, "warmup": 3},
    "full": {"runs": 60, "warmup": 5},
}
DEFAULT_TURNS = 5
TARGET_OVERHEAD_MS = 5.0  # Polos platform overhead per LLM call + tool call, median
RUN_TIMEOUT_S = 60.0
PHASES = ("interleaved", "blocks")
PHASE_TITLES = {
    "interleaved": "interleaved (one run of each variant per round)",
    "blocks": "back to back (each variant's runs in one block)",
}
BREAKDOWN = (
    "call_to_attempt_ms",
    "attempt_to_first_llm_ms",
    "record_ms",
    "loop_between_steps_ms",
    "last_llm_to_complete_ms",
    "complete_ms",
    "complete_to_result_ms",
)


def expected_answer(turns: int) -> str:
    """What the fake model's last answer says after ``turns`` turns."""
    return f"looked up {turns - 1} numbers"


# ---------------------------------------------------------------------- samples and metrics


@dataclass
class Sample:
    """One run of one variant: its wall time and the stamps taken in its model/tool calls."""

    seconds: float
    started: float
    """``time.perf_counter()`` when the timed call began (same clock as the stamps: on
    Linux it is CLOCK_MONOTONIC, shared by every process)."""
    stamps: list[tuple[str, float]] = field(default_factory=list)
    execution_id: str | None = None
    round: int = -1


def turn_metrics(sample: Sample) -> dict[str, float] | None:
    """From one run's stamps (``llm>``, ``llm<``, ``tool>``, ``tool<`` in time order), in ms:
    the mean model-call time; the mean gap after a model call (until the tool starts) and
    after a tool call (until the next model call starts); the time from the call's start
    to the first model call (``start``) and from the last answer to the call's return
    (``end``). None if the run has no model-call stamps (pydantic-ai variants)."""
    by_label = labelled(sample.stamps)
    llm_start, llm_end = by_label["llm>"], by_label["llm<"]
    tool_start, tool_end = by_label["tool>"], by_label["tool<"]
    if not llm_start or len(llm_start) != len(llm_end) or len(tool_start) != len(tool_end):
        return None
    if len(tool_start) != len(llm_start) - 1:
        return None
    after_llm = [tool_start[n] - llm_end[n] for n in range(len(tool_start))]
    after_tool = [llm_start[n + 1] - tool_end[n] for n in range(len(tool_end))]
    model = [e - s for s, e in zip(llm_start, llm_end, strict=True)]
    out = {
        "model_ms": statistics.fmean(model) * 1000,
        "after_llm_ms": statistics.fmean(after_llm) * 1000 if after_llm else 0.0,
        "after_tool_ms": statistics.fmean(after_tool) * 1000 if after_tool else 0.0,
        "start_ms": (llm_start[0] - sample.started) * 1000,
        "end_ms": (sample.started + sample.seconds - llm_end[-1]) * 1000,
    }
    out.update(breakdown(sample, by_label))
    return out


def labelled(stamps: list[tuple[str, float]]) -> dict[str, list[float]]:
    """The stamps' times by label, each list in time order."""
    by_label: dict[str, list[float]] = {"llm>": [], "llm<": [], "tool>": [], "tool<": []}
    for label, t in stamps:
        by_label.setdefault(label, []).append(t)
    return by_label


def breakdown(sample: Sample, by_label: dict[str, list[float]]) -> dict[str, float]:
    """Where a Polos run's time goes, from the worker's ``AGENT_BENCH_BREAKDOWN`` stamps (ms):
    the caller's call -> the attempt's start on the worker (invoke + dispatch); attempt start
    -> first model call; one step record's round trip (mean of the run's ``RecordStep``
    requests); the loop's own time between steps (gaps minus the records in them); last
    model answer -> ``Complete`` sent (the last ``llm`` record and the loop's end); the
    ``Complete`` round trip; its acknowledgement -> the result in the caller."""
    attempt, records = by_label.get("attempt>"), by_label.get("RecordStep>")
    complete, complete_ack = by_label.get("Complete>"), by_label.get("Complete<")
    if not attempt or not records or not complete or not complete_ack:
        return {}
    record_ms = [(e - s) * 1000 for s, e in zip(records, by_label["RecordStep<"], strict=True)]
    llm_start, llm_end = by_label["llm>"], by_label["llm<"]
    tool_start, tool_end = by_label["tool>"], by_label["tool<"]
    gaps = sum(tool_start[n] - llm_end[n] for n in range(len(tool_start)))
    gaps += sum(llm_start[n + 1] - tool_end[n] for n in range(len(tool_end)))
    n_gaps = 2 * len(tool_start)
    in_gaps = sum(record_ms[:n_gaps]) / 1000  # every record but the last llm step's
    return {
        "call_to_attempt_ms": (attempt[0] - sample.started) * 1000,
        "attempt_to_first_llm_ms": (llm_start[0] - attempt[0]) * 1000,
        "record_ms": statistics.fmean(record_ms),
        "loop_between_steps_ms": (gaps - in_gaps) * 1000 / n_gaps if n_gaps else 0.0,
        "last_llm_to_complete_ms": (complete[0] - llm_end[-1]) * 1000,
        "complete_ms": (complete_ack[0] - complete[0]) * 1000,
        "complete_to_result_ms": (sample.started + sample.seconds - complete_ack[0]) * 1000,
    }


def summarise(samples: list[Sample], turns: int) -> dict[str, Any]:
    """Medians (and p90 of the run time) over a variant's samples, in ms."""
    runs_ms = [s.seconds * 1000 for s in samples]
    out: dict[str, Any] = {
        "n": len(samples),
        "run_median_ms": statistics.median(runs_ms),
        "run_p90_ms": percentile(runs_ms, 90),
        "run_min_ms": min(runs_ms),
        "run_mean_ms": statistics.fmean(runs_ms),
        "per_turn_ms": statistics.median(runs_ms) / turns,
        "runs_ms": [round(v, 3) for v in runs_ms],
    }
    metrics = [turn_metrics(s) for s in samples]
    if all(m is not None for m in metrics) and metrics:
        got = [m for m in metrics if m is not None]
        for name in ("model_ms", "after_llm_ms", "after_tool_ms", "start_ms", "end_ms"):
            out[name] = statistics.median(m[name] for m in got)
        if all(BREAKDOWN[0] in m for m in got):
            out["breakdown"] = {name: statistics.median(m[name] for m in got) for name in BREAKDOWN}
        out["fixed_ms"] = statistics.median(m["start_ms"] + m["end_ms"] for m in got)
        # One turn inside the loop: a model call, the gap after it, the tool (~0), the gap
        # after the tool (the last turn has no tool: close enough for K >= 5).
        out["loop_turn_ms"] = statistics.median(
            m["model_ms"] + m["after_llm_ms"] + m["after_tool_ms"] for m in got
        )
    return out


def paired_overhead(samples: list[Sample], base: list[Sample], turns: int) -> float | None:
    """Median over rounds of (this variant's run - the baseline's run of the same round) / K
    (interleaved phase only: None when the runs have no rounds)."""
    base_by_round = {s.round: s.seconds for s in base if s.round >= 0}
    diffs = [
        (s.seconds - base_by_round[s.round]) * 1000 / turns
        for s in samples
        if s.round in base_by_round
    ]
    return statistics.median(diffs) if diffs else None


# ---------------------------------------------------------------------- processes


class FakeModel:
    """``workers/agent_fake_llm.py`` in its own process; ``url`` is its OpenAI base URL."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKERS / "agent_fake_llm.py"), str(self.port)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"the fake model did not start (see {log_path})")
        self.url = line.split()[1]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class DbosApp:
    """``workers/dbos_agent_app.py`` on one system database: JSON commands on stdin."""

    def __init__(self, db_url: str, fake_url: str, log_path: Path) -> None:
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKERS / "dbos_agent_app.py"), db_url, fake_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )
        self.log_path = log_path
        if self._line() != "ready":
            self.stop()
            raise RuntimeError(f"the DBOS app did not start (see {log_path})")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the DBOS app exited (see {self.log_path})")
            line = line.strip()
            if line == "ready" or line.startswith("{"):
                return line

    def command(self, cmd: str, turns: int, tag: str) -> dict[str, Any]:
        """Send one command and return its JSON answer."""
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(json.dumps({"cmd": cmd, "turns": turns, "tag": tag}) + "\n")
        stdin.flush()
        out: dict[str, Any] = json.loads(self._line())
        return out

    def stop(self) -> None:
        """Ask it to quit (DBOS.destroy), then make sure it is gone."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@contextlib.contextmanager
def stopping(thing: FakeModel | DbosApp) -> Iterator[Any]:
    """Stop ``thing`` on the way out."""
    try:
        yield thing
    finally:
        thing.stop()


# ---------------------------------------------------------------------- variants


Runner = Callable[[str], Awaitable[Sample]]


@dataclass
class Variant:
    """A way of running the agent, and what it measured."""

    name: str
    title: str
    run: Runner
    store: str | None = None
    engine: str = ""
    samples: dict[str, list[Sample]] = field(
        default_factory=lambda: {phase: [] for phase in PHASES}
    )


def check(answer: Any, turns: int, variant: str) -> None:
    """Fail loudly if a run did not make the expected turns."""
    if answer != expected_answer(turns):
        raise RuntimeError(f"{variant}: unexpected answer {answer!r}")


def in_process_runners(fake_url: str, turns: int) -> dict[str, Runner]:
    """The variants that run in this process: baseline, the SDK in memory, pydantic-ai."""
    provider = make_provider(fake_url)
    agent = make_agent(fake_url)

    async def baseline(tag: str) -> Sample:
        token = RUN_KEY.set(tag)
        try:
            t0 = time.perf_counter()
            answer = await agent_loop(provider.generate, call_lookup, prompt(turns, tag))
            seconds = time.perf_counter() - t0
        finally:
            RUN_KEY.reset(token)
        check(answer, turns, "baseline")
        return Sample(seconds, t0, STAMPS.pop([tag])[tag])

    async def memory(tag: str) -> Sample:
        payload = agent.payload(prompt(turns, tag)).model_dump(mode="json")
        token = RUN_KEY.set(tag)
        try:
            t0 = time.perf_counter()
            outcome, _ = await run_once(agent, payload, execution_id=tag)
            seconds = time.perf_counter() - t0
        finally:
            RUN_KEY.reset(token)
        if not outcome.completed:
            raise RuntimeError(f"polos-memory: run failed: {outcome.error}")
        check(outcome.result["result"], turns, "polos-memory")
        return Sample(seconds, t0, STAMPS.pop([tag])[tag])

    runners: dict[str, Runner] = {"baseline": baseline, "polos-memory": memory}
    if pydantic_ai_available():
        pyai = make_pydantic_ai_agent(fake_url)

        async def pydantic_ai(tag: str) -> Sample:
            token = RUN_KEY.set(tag)
            try:
                t0 = time.perf_counter()
                result = await pyai.run(prompt(turns, tag))
                seconds = time.perf_counter() - t0
            finally:
                RUN_KEY.reset(token)
            check(result.output, turns, "pydantic-ai")
            STAMPS.pop([tag])
            return Sample(seconds, t0)

        runners["pydantic-ai"] = pydantic_ai
    return runners


def polos_runner(client: PolosClient, fake_url: str, turns: int, name: str) -> Runner:
    """``await agent.run(client, ...)`` against one orchestrator, timed here."""
    agent = make_agent(fake_url)

    async def run(tag: str) -> Sample:
        t0 = time.perf_counter()
        result = await agent.run(client, prompt(turns, tag), timeout=RUN_TIMEOUT_S)
        seconds = time.perf_counter() - t0
        check(result.result, turns, name)
        return Sample(seconds, t0, execution_id=result.execution_id)

    return run


def dbos_runner(app: DbosApp, cmd: str, turns: int, name: str) -> Runner:
    """One workflow run in the DBOS process, timed there."""

    async def run(tag: str) -> Sample:
        out = app.command(cmd, turns, tag)
        check(out["answer"], turns, name)
        stamps = [(str(label), float(t)) for label, t in out["stamps"]]
        return Sample(float(out["seconds"]), float(out["started"]), stamps if cmd == "run" else [])

    return run


# ---------------------------------------------------------------------- the run


async def measure(
    variants: list[Variant], runs: int, warmup: int, seed: int = 1
) -> dict[str, list[float]]:
    """Both phases; returns the 1-minute load average sampled during each.

    * ``interleaved``: every variant warmed up, then ``runs`` rounds of one run of each,
      in a shuffled order. Between two runs of one variant the others run, so its
      processes have sat idle for some 0.5 s when its run starts.
    * ``blocks``: each variant in turn (shuffled order) runs ``warmup`` runs, not kept,
      then ``runs`` runs back to back, as the other benchmarks measure latency: its
      processes are busy from one run to the next.
    """
    rng = random.Random(seed)
    loads: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for v in variants:
        for i in range(warmup):
            await v.run(f"warm-{v.name}-{i}")
    for r in range(runs):
        order = list(variants)
        rng.shuffle(order)
        for v in order:
            sample = await v.run(f"{v.name}-{r}")
            sample.round = r
            v.samples["interleaved"].append(sample)
        loads["interleaved"].append(round(os.getloadavg()[0], 2))
    order = list(variants)
    rng.shuffle(order)
    for v in order:
        for i in range(warmup):
            await v.run(f"warm-block-{v.name}-{i}")
        for r in range(runs):
            v.samples["blocks"].append(await v.run(f"{v.name}-block-{r}"))
        loads["blocks"].append(round(os.getloadavg()[0], 2))
    return loads


async def polos_stamps(client: PolosClient, variant: Variant) -> dict[str, Any]:
    """Fetch the worker's stamps of the measured executions; the step kinds of the last one."""
    samples = [s for phase in PHASES for s in variant.samples[phase]]
    ids = [s.execution_id for s in samples if s.execution_id]
    handle = await client.invoke("bench_agent_stamps", ids)
    stamps = await handle.result(timeout=RUN_TIMEOUT_S)
    for s in samples:
        s.stamps = [(str(label), float(t)) for label, t in stamps.get(s.execution_id, [])]
    steps = await client.list_steps(ids[-1])
    kinds: dict[str, int] = {}
    for step in steps:
        kinds[str(step.kind)] = kinds.get(str(step.kind), 0) + 1
    return {"last_run_steps": kinds, "last_execution_id": ids[-1]}


async def run_all(
    stores: list[Store], mode: str, turns: int, tmp: Path, breakdown: bool = True
) -> tuple[list[Variant], dict[str, Any]]:
    """Start everything, measure, stop everything."""
    cfg = MODES[mode]
    extra: dict[str, Any] = {"polos_steps": {}}
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(stopping(FakeModel(tmp / "fake-llm.log")))
        runners = in_process_runners(fake.url, turns)
        variants = [
            Variant("baseline", "No durability (same loop, in process)", runners["baseline"]),
            Variant(
                "polos-memory",
                "Polos agent, in-memory step log (no store)",
                runners["polos-memory"],
            ),
        ]
        if "pydantic-ai" in runners:
            variants.append(
                Variant("pydantic-ai", "pydantic-ai, no durability", runners["pydantic-ai"])
            )
        clients: dict[str, PolosClient] = {}
        for store in stores:
            kind = str(store)
            url = stack.enter_context(store.fresh(tmp, f"polos-agent-{kind}"))
            server = stack.enter_context(
                ServerProcess(url, log_path=tmp / f"polos-{kind}-server.log")
            )
            stack.enter_context(
                WorkerProcess(
                    WORKERS / "agent_worker.py",
                    api_url=server.url,
                    env={
                        "FAKE_LLM_URL": fake.url,
                        "AGENT_BENCH_BREAKDOWN": "1" if breakdown else "0",
                    },
                    log_path=tmp / f"polos-{kind}-worker.log",
                )
            )
            wait_for_workers(server.url, 1)
            client = PolosClient(server.url)
            clients[kind] = client
            name = f"polos-{kind}"
            variants.append(
                Variant(
                    name,
                    f"Polos, {STORE_TITLES[kind]}",
                    polos_runner(client, fake.url, turns, name),
                    kind,
                    "polos",
                )
            )
            dbos_url = stack.enter_context(store.fresh(tmp, f"dbos-agent-{kind}"))
            app = stack.enter_context(
                stopping(DbosApp(dbos_url, fake.url, tmp / f"dbos-{kind}.log"))
            )
            name = f"dbos-{kind}"
            variants.append(
                Variant(
                    name,
                    f"DBOS, {STORE_TITLES[kind]}",
                    dbos_runner(app, "run", turns, name),
                    kind,
                    "dbos",
                )
            )
            if pydantic_ai_available():
                name = f"pydantic-ai-dbos-{kind}"
                variants.append(
                    Variant(
                        name,
                        f"pydantic-ai + DBOS, {STORE_TITLES[kind]}",
                        dbos_runner(app, "pydantic_ai", turns, name),
                        kind,
                        "pydantic-ai-dbos",
                    )
                )
        try:
            print(
                f"  {len(variants)} variants: warm-up ({cfg['warmup']} runs each), "
                f"{cfg['runs']} interleaved rounds, then {cfg['runs']} runs of each back to "
                "back ...",
                flush=True,
            )
            t0 = time.perf_counter()
            extra["loadavg"] = await measure(variants, cfg["runs"], cfg["warmup"])
            extra["measure_seconds"] = time.perf_counter() - t0
            for v in variants:
                if v.engine == "polos" and v.store is not None:
                    extra["polos_steps"][v.store] = await polos_stamps(clients[v.store], v)
        finally:
            for client in clients.values():
                await client.aclose()
    return variants, extra


# ---------------------------------------------------------------------- report


def _src_sha1() -> str:
    """A hash of the measured ``src/`` (every .py file's path and bytes), without git."""
    digest = hashlib.sha1()
    src = Path(polos.__file__).resolve().parent
    for path in sorted(src.rglob("*.py")):
        digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


_ECHO_SERVER = """
import asyncio, sys

async def echo(reader, writer):
    while data := await reader.read(64):
        writer.write(data)
        await writer.drain()

async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def tcp_wakeup_probe() -> dict[str, float]:
    """Median loopback round trip (ms) of one byte to an asyncio echo process, back to
    back and after it sat idle: how much waking an idle process costs on this machine
    (every hop between Polos's processes pays it when they were idle)."""
    proc = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def rtt(idle: float, n: int) -> float:
                times = []
                for _ in range(n):
                    time.sleep(idle)
                    t0 = time.perf_counter()
                    sock.sendall(b"x")
                    sock.recv(64)
                    times.append((time.perf_counter() - t0) * 1000)
                return round(statistics.median(times), 3)

            rtt(0, 20)  # warm-up
            return {
                "back_to_back": rtt(0, 50),
                "after_100ms_idle": rtt(0.1, 15),
                "after_500ms_idle": rtt(0.5, 9),
            }
    finally:
        proc.terminate()
        proc.wait(10)


def environment(stores: list[Store]) -> dict[str, Any]:
    """Versions, machine, load average, store settings."""

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "polos": polos.__version__,
        "polos_src_sha1": _src_sha1(),
        "dbos": version("dbos"),
        "openai": version("openai"),
        "pydantic_ai": version("pydantic-ai-slim"),
        "psycopg": version("psycopg"),
        "perf_counter": time.get_clock_info("perf_counter").implementation,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "stores": {str(s): {"version": s.check(), "settings": s.settings()} for s in stores},
    }


def analyse(variants: list[Variant], turns: int, phase: str) -> dict[str, Any]:
    """One phase's per-variant summaries, overheads against the baseline, Polos/DBOS
    ratios and the target."""
    base = next(v for v in variants if v.name == "baseline")
    summaries: dict[str, Any] = {}
    base_summary = summarise(base.samples[phase], turns)
    for v in variants:
        s = summarise(v.samples[phase], turns)
        s["title"] = v.title
        s["overhead_per_turn_ms"] = (s["run_median_ms"] - base_summary["run_median_ms"]) / turns
        s["overhead_per_turn_paired_ms"] = paired_overhead(
            v.samples[phase], base.samples[phase], turns
        )
        if "loop_turn_ms" in s and "loop_turn_ms" in base_summary:
            s["in_loop_overhead_ms"] = s["loop_turn_ms"] - base_summary["loop_turn_ms"]
            s["fixed_overhead_ms"] = s["fixed_ms"] - base_summary["fixed_ms"]
        summaries[v.name] = s
    ratios: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    for store in STORES:
        p, d = summaries.get(f"polos-{store}"), summaries.get(f"dbos-{store}")
        if p is None:
            continue
        met = p["overhead_per_turn_ms"] < TARGET_OVERHEAD_MS
        targets[f"polos_{store}_overhead_under_5ms"] = {
            "target": f"median overhead per turn < {TARGET_OVERHEAD_MS:g} ms",
            "value_ms": p["overhead_per_turn_ms"],
            "met": met,
        }
        if "in_loop_overhead_ms" in p:
            marginal = p["in_loop_overhead_ms"]
            targets[f"polos_{store}_in_loop_overhead_under_5ms"] = {
                "target": f"one turn inside the loop (model call + the time after it + the "
                f"time after the tool call) minus the baseline's < {TARGET_OVERHEAD_MS:g} ms "
                "(per-run fixed costs left out)",
                "value_ms": marginal,
                "met": marginal < TARGET_OVERHEAD_MS,
            }
        if d is not None:
            ratios[store] = {
                "overhead_polos_over_dbos": p["overhead_per_turn_ms"] / d["overhead_per_turn_ms"]
                if d["overhead_per_turn_ms"] > 0
                else None,
                "run_polos_over_dbos": p["run_median_ms"] / d["run_median_ms"],
            }
    return {"variants": summaries, "ratios": ratios, "targets": targets}


def _f(value: Any, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


NOTES = (
    "Per turn = run median / turns. Overhead per turn = (run median - no-durability run "
    "median) / turns: the platform's cost per model call + tool call (the last turn has no "
    "tool call), fixed per-run costs spread over the turns. In-loop overhead per turn: "
    "(model call + after model + after tool call) - the baseline's, per-run costs left out.\n"
    "Model call: a model call's time inside the process that makes it (fake model, adapter, "
    "HTTP). After model / after tool call: mean time from a model call's end to the tool "
    "call's start (the llm step's record) and from a tool call's end to the next model "
    "call's start (the tool step's record), median over runs. Per run: start / end = from "
    "the call (Polos: agent.run in the client; DBOS: the workflow call, in its process) to "
    "the first model call, and from the last model answer to the result in the caller."
)


def table(analysis: dict[str, Any], turns: int) -> str:
    """The results as one markdown table, with notes."""
    rows: list[list[str]] = []
    ratios = analysis["ratios"]
    for name, s in analysis["variants"].items():
        ratio = "-"
        for store in STORES:
            if name == f"polos-{store}" and store in ratios:
                ratio = _f(ratios[store]["overhead_polos_over_dbos"]) + "x"
        rows.append(
            [
                s["title"],
                f"{s['run_median_ms']:.1f} / {s['run_p90_ms']:.1f}",
                f"{s['per_turn_ms']:.2f}",
                "-" if name == "baseline" else f"{s['overhead_per_turn_ms']:.2f}",
                ratio,
                "-"
                if name == "baseline" or "in_loop_overhead_ms" not in s
                else f"{s['in_loop_overhead_ms']:.2f}",
                _f(s.get("model_ms")),
                f"{_f(s.get('after_llm_ms'))} / {_f(s.get('after_tool_ms'))}",
                f"{_f(s.get('start_ms'), '.1f')} / {_f(s.get('end_ms'), '.1f')}",
            ]
        )
    header = [
        f"Variant ({turns} turns per run)",
        "Run median / p90 (ms)",
        "Per turn (ms)",
        "Overhead per turn (ms)",
        "Polos/DBOS overhead",
        "In-loop overhead per turn (ms)",
        "Model call (ms)",
        "After model / after tool call (ms)",
        "Per run: start / end (ms)",
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    lines = [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt(row) for row in rows]
    return "\n".join(lines)


BREAKDOWN_TITLES = {
    "call_to_attempt_ms": "agent.run called -> attempt starts on the worker (invoke + dispatch)",
    "attempt_to_first_llm_ms": "attempt start -> first model call (payload, loop set-up)",
    "record_ms": "one step record: RecordStep sent -> acknowledged (2 per turn)",
    "loop_between_steps_ms": "loop code between two steps, outside the record",
    "last_llm_to_complete_ms": "last model answer -> Complete sent (its llm record, loop end)",
    "complete_ms": "Complete sent -> acknowledged",
    "complete_to_result_ms": "Complete acknowledged -> result in the caller",
}


def breakdown_table(analysis: dict[str, Any]) -> str:
    """Where a Polos run's time goes (medians over runs, ms), one column per store."""
    names = [n for n, s in analysis["variants"].items() if "breakdown" in s]
    if not names:
        return ""
    header = ["Polos run, from the worker's stamps (median ms)"]
    header += [analysis["variants"][n]["title"] for n in names]
    rows = [
        [title, *(f"{analysis['variants'][n]['breakdown'][key]:.2f}" for n in names)]
        for key, title in BREAKDOWN_TITLES.items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    lines = [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(lines + [fmt(row) for row in rows])


def main() -> None:
    """Parse the options, run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 runs per variant (else 60)")
    parser.add_argument("--store", choices=[*STORES, "both"], default="both")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("POLOS_BENCH_PG_URL", DEFAULT_PG_URL),
        help="an existing PostgreSQL database to connect to for CREATE/DROP DATABASE "
        f"(default: $POLOS_BENCH_PG_URL or {DEFAULT_PG_URL})",
    )
    parser.add_argument("--turns", type=int, default=DEFAULT_TURNS, help="model calls per run")
    parser.add_argument(
        "--no-breakdown",
        action="store_true",
        help="run the Polos workers uninstrumented (no per-request stamps)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, dbs)")
    parser.add_argument("--output", type=Path, default=RESULTS / "agent-latest.json")
    args = parser.parse_args()
    if args.turns < 2:
        parser.error("--turns must be at least 2 (one tool call)")
    mode = "quick" if args.quick else "full"
    stores = [
        Store(kind, args.pg_url) for kind in (STORES if args.store == "both" else [args.store])
    ]
    env = environment(stores)
    env["tcp_wakeup_ms"] = tcp_wakeup_probe()
    on = ", ".join(f"{STORE_TITLES[k]} {v['version']}" for k, v in env["stores"].items())
    print(
        f"Agent turn overhead: Polos {env['polos']}, DBOS {env['dbos']}, pydantic-ai "
        f"{env['pydantic_ai'] or 'not installed'} on {on}; {env['cpus']} CPUs; "
        f"Python {env['python']}; mode {mode}, {args.turns} turns per run"
    )
    load = env["loadavg_at_start"][0]
    if load > 0.5 * (env["cpus"] or 1):
        print(f"WARNING: load average {load} before starting: numbers are pessimistic.")

    tmp = Path(tempfile.mkdtemp(prefix="polos-agent-bench-"))
    started = time.perf_counter()
    try:
        variants, extra = asyncio.run(
            run_all(stores, mode, args.turns, tmp, breakdown=not args.no_breakdown)
        )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    env["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    env["loadavg_1min_during"] = {
        phase: {"mean": round(statistics.fmean(v), 2), "max": max(v), "min": min(v)}
        for phase, v in extra["loadavg"].items()
    }
    analysis = {phase: analyse(variants, args.turns, phase) for phase in PHASES}
    results = {
        "config": {
            "mode": mode,
            **MODES[mode],
            "turns": args.turns,
            "stores": args.store,
            "breakdown": not args.no_breakdown,
        },
        "phases": analysis,
        "polos_steps": extra["polos_steps"],
        "loadavg": extra["loadavg"],
        "environment": env,
        "measure_seconds": extra["measure_seconds"],
        "total_seconds": time.perf_counter() - started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    for phase in PHASES:
        during = env["loadavg_1min_during"][phase]
        print(
            f"\n## {PHASE_TITLES[phase]}: load average {during['mean']} mean / {during['max']} max\n"
        )
        print(table(analysis[phase], args.turns))
        split = breakdown_table(analysis[phase])
        if split:
            print()
            print(split)
    print()
    print(NOTES)
    print()
    wake = env["tcp_wakeup_ms"]
    print(
        f"Load average (1 min): {env['loadavg_at_start'][0]} at start, "
        f"{env['loadavg_at_end'][0]} at end ({env['cpus']} CPUs). Loopback TCP round trip to "
        f"an idle asyncio echo process: {wake['back_to_back']:.2f} ms back to back, "
        f"{wake['after_100ms_idle']:.2f} ms after 100 ms idle, "
        f"{wake['after_500ms_idle']:.2f} ms after 500 ms idle (median)."
    )
    for store, steps in extra["polos_steps"].items():
        print(f"Polos {STORE_TITLES[store]}: steps of the last run: {steps['last_run_steps']}")
    print(f"Target (Polos overhead per turn < {TARGET_OVERHEAD_MS:g} ms, median):")
    for phase in PHASES:
        for key, t in analysis[phase]["targets"].items():
            verdict = "met" if t["met"] else "NOT met"
            print(f"  {phase}: {key}: {t['value_ms']:.2f} ms: {verdict}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nTotal {results['total_seconds']:.0f} s; results written to {args.output}")


if __name__ == "__main__":
    main()
