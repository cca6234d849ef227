"""Three turns of one conversation: each run is a separate execution, the session links them."""

import asyncio

from agent import travel_agent

from polos import ApiError, PolosClient

SESSION = "example-04:ada"
TURNS = [
    "Hi! My name is Ada and I'm planning a trip to Lisbon.",
    "What should I pack for three days there in spring?",
    "Remind me: what's my name, and where am I going?",
]


async def main() -> None:
    async with PolosClient() as client:
        # Start from a clean conversation, so the example can be run again.
        try:
            await client.sessions.delete(SESSION)
        except ApiError as exc:
            if exc.status_code != 404:
                raise

        for turn in TURNS:
            result = await travel_agent.run(client, turn, session_id=SESSION, timeout=60)
            print(f"you:   {turn}")
            print(f"agent: {result.result}")
            # result.messages: the loaded history, then this turn's question and answer.
            print(f"       (the model saw {len(result.messages) - 2} earlier messages)\n")

        memory = await client.sessions.get(SESSION)

    print(f"session {SESSION!r}: version {memory.version}, {len(memory.messages)} messages stored")
    print(f"(show it with: polos sessions show {SESSION})")

    if memory.version != len(TURNS) or len(memory.messages) != 2 * len(TURNS):
        raise SystemExit("expected one save per turn and a user + assistant message per turn")
    if "ada" not in str(result.result).lower():
        raise SystemExit("the last answer does not remember the user's name")


if __name__ == "__main__":
    asyncio.run(main())
