"""Serves the weather agent: run it, then `python main.py` in another terminal."""

import asyncio

from agent import weather_agent
from fake_model import answer

from polos import PolosClient, Worker
from polos.testing import fake_llm_unless_key

# Without OPENAI_API_KEY, model calls go to a local fake model server (see fake_model.py).
fake_llm_unless_key(answer)

client = PolosClient()  # POLOS_API_URL (default http://127.0.0.1:8080), POLOS_API_KEY...
worker = Worker(client=client, agents=[weather_agent])

if __name__ == "__main__":
    asyncio.run(worker.run())
