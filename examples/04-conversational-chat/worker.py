"""Serves the travel assistant: run it, then `python main.py` in another terminal."""

import asyncio

from agent import travel_agent
from fake_model import answer

from polos import PolosClient, Worker
from polos.testing import fake_llm_unless_key

# Without OPENAI_API_KEY, model calls go to a local fake model server (see fake_model.py).
fake_llm_unless_key(answer)

client = PolosClient()
# The worker's client is also what the agent uses to load and save session memory.
worker = Worker(client=client, agents=[travel_agent])

if __name__ == "__main__":
    asyncio.run(worker.run())
