"""Stream a story as the model writes it, then read the recorded result."""

import asyncio
import time

from agent import story_agent

from polos import PolosClient

PROMPT = "Tell me a story about a lighthouse keeper."


async def main() -> None:
    async with PolosClient() as client:
        started = time.monotonic()
        # stream() starts the run and returns at once; the text arrives as live events
        # (topic agent/<execution id>) while the worker reads the model's stream.
        stream = await story_agent.stream(client, PROMPT)
        print(f"> {PROMPT}   (execution {stream.execution_id})\n")

        chunks: list[str] = []
        first_chunk_at, last_chunk_at = None, 0.0
        async for chunk in stream.text_chunks():
            if first_chunk_at is None:
                first_chunk_at = time.monotonic() - started
            last_chunk_at = time.monotonic() - started
            print(chunk, end="", flush=True)
            chunks.append(chunk)
        print("\n")

        # What the stream showed is not what is durable: the recorded result is the whole
        # answer of each model call, the same however many times anyone reads it.
        result = await stream.result(timeout=60)

    if first_chunk_at is None:
        raise SystemExit("no text was streamed")
    print(
        f"{len(chunks)} chunks, the first after {first_chunk_at:.2f} s, "
        f"the last after {last_chunk_at:.2f} s"
    )
    print(
        f"final result: {len(result.text)} characters, {result.usage.output_tokens} output "
        f"tokens, stop reason {result.stop_reason}"
    )
    if len(chunks) < 2:
        raise SystemExit("expected the answer in several chunks")
    if "".join(chunks) != result.text:
        raise SystemExit("the streamed chunks do not add up to the final answer")
    print("the streamed chunks add up to the final answer")


if __name__ == "__main__":
    asyncio.run(main())
