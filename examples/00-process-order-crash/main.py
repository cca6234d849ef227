"""The crash demo: charge an order, kill -9 its worker, finish on another, charge once.

Starts its own workers (python worker.py) against the orchestrator at POLOS_API_URL:

    polos-server start --local      # terminal 1
    python main.py                  # terminal 2
"""

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from polos import PolosClient

HERE = Path(__file__).resolve().parent
SCRATCH = Path(os.environ.get("POLOS_EXAMPLE_TMP") or tempfile.mkdtemp(prefix="polos-crash-"))
LEDGER = SCRATCH / "ledger.log"  # worker.py's charge_stripe appends one line per real charge


def start_worker(n: int) -> subprocess.Popen:
    """``python worker.py`` in its own process, its output in a log file."""
    log = open(SCRATCH / f"worker-{n}.log", "w")  # noqa: SIM115 - the child keeps it open
    env = {**os.environ, "POLOS_EXAMPLE_TMP": str(SCRATCH)}
    return subprocess.Popen(
        [sys.executable, "worker.py"], cwd=HERE, env=env, stdout=log, stderr=log
    )


async def eventually(probe, what: str, timeout: float = 20.0):
    """Poll ``probe()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while not (value := await probe()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value


async def wait_connected(client: PolosClient, process: subprocess.Popen, n: int) -> None:
    """Until the orchestrator lists the worker process as connected."""

    async def connected() -> bool:
        if process.poll() is not None:
            log = (SCRATCH / f"worker-{n}.log").read_text()
            raise SystemExit(f"worker {n} exited with {process.returncode}:\n{log[-2000:]}")
        workers = await client.list_workers()
        return any(w.pid == process.pid and w.status == "connected" for w in workers)

    await eventually(connected, f"worker {n} to connect")


async def waiting_at(client: PolosClient, execution_id: str, step_key: str):
    page = await client.list_waits(workflow_id="process_order", limit=500)
    return next(
        (w for w in page.items if w.execution_id == execution_id and w.step_key == step_key), None
    )


def ledger(kind: str, order_id: str) -> list[str]:
    lines = LEDGER.read_text().splitlines() if LEDGER.exists() else []
    return [line for line in lines if line.startswith(f"{kind} {order_id} ")]


def where(lines: list[str], names: dict[int, str]) -> str:
    """Which worker(s) wrote these ledger lines (each ends with ``pid=N``)."""
    pids = [int(line.rsplit("pid=", 1)[1]) for line in lines]
    return ", ".join(names.get(pid, f"pid {pid}") for pid in pids) or "nowhere"


async def main() -> None:
    client = PolosClient()
    workers: list[subprocess.Popen] = []
    try:
        # 1. A worker connects and registers process_order (and its trigger on order/new).
        worker_1 = start_worker(1)
        workers.append(worker_1)
        await wait_connected(client, worker_1, 1)
        print(f"[1] worker 1 is up (pid {worker_1.pid})")

        # 2. Publishing an order starts the workflow: the agent validates it first.
        order = {"id": f"o-{uuid.uuid4().hex[:6]}", "amount": 5000, "items": ["gpu", "monitor"]}
        event = await client.events.publish("order/new", order)
        execution_id = event.triggered[0]
        print(f"[2] published order/new {order} -> execution {execution_id}")

        # 3. Over 1000: it suspends for a human. Nothing runs while it waits.
        async def at_approval():
            execution = await client.get_execution(execution_id)
            if execution.status not in {"queued", "running", "waiting"}:
                # A real model may judge the order invalid: then there is nothing to approve.
                raise SystemExit(f"the order ended before the approval: {execution.result}")
            return await waiting_at(client, execution_id, "approval")

        await eventually(at_approval, "the approval")
        (agent_run,) = (await client.list_executions(parent_id=execution_id)).items
        verdict = agent_run.result["result"]
        print(f"[3] agent validate_order: valid={verdict['valid']} ({verdict['reason']})")
        print("    amount > 1000: suspended at 'approval', holding no worker")

        await client.resume(execution_id, "approval", {"approved": True}, by="fraud-team")
        print("[4] approved (client.resume) -> the workflow goes on and charges the card")

        # 5. Charged, now parked until the warehouse picks the parcel up.
        pickup = await eventually(
            lambda: waiting_at(client, execution_id, "wait_pickup"), "the pickup wait"
        )
        print(f"[5] charged: {' | '.join(ledger('charge', order['id'])) or 'no charge?'}")
        print(f"    waiting at 'wait_pickup' for an event on {pickup.topic}")

        # 6. The worker dies without warning.
        os.kill(worker_1.pid, signal.SIGKILL)
        worker_1.wait()
        print(f"[6] kill -9 worker 1 (pid {worker_1.pid})")

        # 7. Another worker comes up (in production: another machine, after a deploy...).
        worker_2 = start_worker(2)
        workers.append(worker_2)
        await wait_connected(client, worker_2, 2)
        print(f"[7] worker 2 is up (pid {worker_2.pid})")

        # 8. The pickup event wakes the workflow on worker 2, which replays the log:
        #    validation, approval and charge return their recorded results; nothing re-runs.
        await client.events.publish(f"warehouse.pickup/{order['id']}", {"dock": 7})
        result = await client.handle(execution_id).result(timeout=20)
        print(f"[8] published {pickup.topic} -> {result}")

        execution = await client.get_execution(execution_id)
        steps = [step.key for step in await client.list_steps(execution_id)]
        print(f"    step log: {', '.join(steps)}")
        print(
            f"    {execution.attempt} attempts (each wait ends one), "
            f"{execution.crashed_attempts} crashed: a waiting execution holds no worker"
        )

        # 9. The ground truth: how many times did the charge really happen, and where?
        names = {worker_1.pid: "worker 1", worker_2.pid: "worker 2"}
        charges = ledger("charge", order["id"])
        emails = ledger("email", order["id"])
        print(f"[9] charge ran {len(charges)} time(s) ({where(charges, names)})")
        print(f"    shipping e-mail sent {len(emails)} time(s) ({where(emails, names)})")
        if len(charges) != 1 or len(emails) != 1 or result["status"] != "completed":
            raise SystemExit("expected one charge, one e-mail and a completed order")
    finally:
        for process in workers:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
