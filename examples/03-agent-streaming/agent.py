"""A storyteller agent, for a long-ish answer worth streaming."""

from polos import Agent

story_agent = Agent(
    id="storyteller",
    provider="openai",
    model="gpt-4o-mini",
    system_prompt="You write very short stories: one paragraph, under 120 words.",
)
