"""Run the three error-handling patterns and show what happened, call by call."""

import asyncio

from worker import LEDGER, Trip

from polos import PolosClient, WorkflowFailedError


def service_calls(execution_id: str) -> list[str]:
    """The ledger lines of one execution, without the execution id."""
    lines = LEDGER.read_text().splitlines() if LEDGER.exists() else []
    return [line.split(" ", 1)[1] for line in lines if line.startswith(execution_id + " ")]


async def main() -> None:
    async with PolosClient() as client:
        # 1. Retries: the rates service fails twice, the step's third attempt succeeds.
        retried = await client.invoke("convert_price", 100)
        result = await retried.result(timeout=30)
        [rate_step] = [s for s in await client.list_steps(retried.id) if s.key == "rate"]
        print(f"1. retries: 100 EUR = {result['amount_usd']} USD")
        print(f"   step 'rate' recorded after {rate_step.attempts} attempts:")
        for call in service_calls(retried.id):
            print(f"     {call}")

        # 2. Fallback: the primary provider keeps failing, the workflow uses the backup.
        fallback = await client.invoke("insurance_quote", "Lisbon")
        result = await fallback.result(timeout=30)
        print(f"2. fallback: {result['price']} EUR from {result['source']}")
        for call in service_calls(fallback.id):
            print(f"     {call}")

        # 3. Compensation: the flight is booked, the hotel is full, the flight is cancelled
        #    and the execution fails with the reason.
        saga = await client.invoke("book_trip", Trip(traveller="noor", city="Oslo"))
        try:
            await saga.result(timeout=30)
            raise SystemExit("the trip should not have been booked")
        except WorkflowFailedError as exc:
            print(f"3. compensation: {exc.error_type}: {exc.error_message}")
        for call in service_calls(saga.id):
            print(f"     {call}")

    retries = service_calls(retried.id)
    if [c.rsplit(" ", 1)[1] for c in retries] != ["failed", "failed", "ok"]:
        raise SystemExit(f"expected two failures then a success: {retries}")
    if [c.split()[0] for c in service_calls(fallback.id)] != ["primary", "primary", "backup"]:
        raise SystemExit("expected two primary attempts, then the backup")
    saga_steps = [c.split()[0] for c in service_calls(saga.id)]
    if saga_steps != ["flight", "hotel", "cancel_flight"]:
        raise SystemExit(f"expected flight, one hotel attempt, then the cancellation: {saga_steps}")


if __name__ == "__main__":
    asyncio.run(main())
