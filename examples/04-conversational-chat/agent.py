"""A travel assistant that remembers the conversation through session memory."""

from polos import Agent

travel_agent = Agent(
    id="travel_assistant",
    provider="openai",
    model="gpt-4o-mini",
    system_prompt=(
        "You are a friendly travel assistant. Keep answers to two or three sentences. "
        "Use what the user told you earlier in the conversation."
    ),
    # memory=True is the default: a run with session_id loads the session's conversation
    # first (step memory:load) and saves it at the end (step memory:save).
    memory_keep_messages=40,
)
