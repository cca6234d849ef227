"""Error handling: retries, a fallback when retries run out, and compensation (a saga).

Run it with `python worker.py` (or `polos worker worker.py`), then `python main.py`.
"""

import asyncio
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel

from polos import (
    PolosClient,
    RetryPolicy,
    StepExecutionError,
    Worker,
    WorkflowContext,
    current_step,
    workflow,
)

# Every call to a (simulated) external service is appended here: the ground truth of what ran.
LEDGER = Path(os.environ.get("POLOS_EXAMPLE_TMP") or tempfile.gettempdir()) / "11-ledger.txt"


def record(what: str) -> None:
    step = current_step()
    with LEDGER.open("a") as ledger:
        ledger.write(f"{step.execution_id} {step.step_key} attempt={step.attempt} {what}\n")


def calls(execution_id: str, step_key: str) -> int:
    """How often the service was called for this step so far (the service's own memory)."""
    if not LEDGER.exists():
        return 0
    return sum(
        line.split()[:2] == [execution_id, step_key] for line in LEDGER.read_text().splitlines()
    )


# ---------------------------------------------------------------- 1. retries


class ServiceUnavailable(Exception):
    """A transient failure: worth retrying."""


def fetch_exchange_rate(currency: str) -> float:
    """A flaky service: the first two calls for a step fail, the third one answers."""
    step = current_step()
    failing = calls(step.execution_id, step.step_key) < 2
    record("failed" if failing else "ok")
    if failing:
        raise ServiceUnavailable("rates service returned 503")
    return {"EUR": 1.0, "USD": 1.08, "GBP": 0.85}[currency]


# Fast retries for the example; the default is 3 attempts, 1 s then 2 s apart (±20 % jitter).
QUICK_RETRIES = RetryPolicy(max_attempts=4, initial_interval=0.1, backoff_coefficient=2.0)


@workflow
async def convert_price(ctx: WorkflowContext, amount: float) -> dict:
    """Retry a flaky step until it works (the retries happen inside the worker)."""
    rate = await ctx.step.run("rate", fetch_exchange_rate, "USD", retry_policy=QUICK_RETRIES)
    return {"amount_usd": round(amount * rate, 2)}


# ---------------------------------------------------------------- 2. fallback


def primary_quote(city: str) -> float:
    record("failed")
    raise ServiceUnavailable("primary weather-insurance API is down")


def backup_quote(city: str) -> float:
    record("ok")
    return 12.5


@workflow
async def insurance_quote(ctx: WorkflowContext, city: str) -> dict:
    """Try the primary provider (with retries); when it keeps failing, use the backup."""
    try:
        price = await ctx.step.run(
            "primary",
            primary_quote,
            city,
            retry_policy=RetryPolicy(max_attempts=2, initial_interval=0.1),
        )
        source = "primary"
    except StepExecutionError as exc:
        # Raised once the retries are exhausted; the failure is recorded, so a replay takes
        # this same path again without calling the primary provider.
        price = await ctx.step.run("backup", backup_quote, city)
        source = f"backup (primary failed {exc.attempts} times: {exc.error_message})"
    return {"price": price, "source": source}


# ---------------------------------------------------------------- 3. compensation (saga)


class Trip(BaseModel):
    traveller: str
    city: str


class NoAvailability(Exception):
    """A business failure: retrying will not help."""


class TripNotBooked(Exception):
    """Raised by the workflow after it undid what it had booked."""


def book_flight(trip: Trip) -> str:
    record(f"booked flight to {trip.city}")
    return f"FL-{current_step().execution_id[-6:]}"


def book_hotel(trip: Trip) -> str:
    record("failed")
    raise NoAvailability(f"no rooms left in {trip.city}")


def cancel_flight(booking: str) -> None:
    record(f"cancelled {booking}")


@workflow
async def book_trip(ctx: WorkflowContext, trip: Trip) -> dict:
    """Book a flight and a hotel; if the hotel fails, undo the flight, then fail."""
    flight = await ctx.step.run("flight", book_flight, trip)
    try:
        hotel = await ctx.step.run(
            "hotel",
            book_hotel,
            trip,
            # Fail at once on this error instead of retrying.
            retry_policy=RetryPolicy(max_attempts=3, non_retryable_errors=[NoAvailability]),
        )
    except StepExecutionError as exc:
        # Compensate: each undo is a step too, so it runs once even if the worker crashes here.
        await ctx.step.run("cancel_flight", cancel_flight, flight)
        # Failing the execution tells the caller (and the UI) that the trip was not booked.
        # Workflows are not retried by default (`@workflow(retry=RetryPolicy(...))` would).
        raise TripNotBooked(f"{exc.error_message}; flight {flight} cancelled") from exc
    return {"status": "booked", "flight": flight, "hotel": hotel}


client = PolosClient()  # POLOS_API_URL (default http://127.0.0.1:8080), POLOS_API_KEY, ...
worker = Worker(client=client, workflows=[convert_price, insurance_quote, book_trip])

if __name__ == "__main__":
    asyncio.run(worker.run())
