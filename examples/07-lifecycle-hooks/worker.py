"""Serves the currency agent: run it, then `python main.py` in another terminal."""

import asyncio

from agent import currency_agent
from fake_model import answer

from polos import PolosClient, Worker
from polos.testing import fake_llm_unless_key

# Without OPENAI_API_KEY, model calls go to a local fake model server (see fake_model.py).
fake_llm_unless_key(answer)

client = PolosClient()
worker = Worker(client=client, agents=[currency_agent])

if __name__ == "__main__":
    asyncio.run(worker.run())
