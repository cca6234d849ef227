"""An agent on a reasoning model, asked to return a summary of its reasoning."""

from polos import Agent

thinking_agent = Agent(
    id="thinking_agent",
    provider="openai",
    # A reasoning model: it thinks before it answers. (gpt-4o-mini does not reason.)
    model="o4-mini",
    system_prompt="Solve the user's puzzle. Give the final answer in one or two sentences.",
    # Passed to every model call as is: the Responses API's reasoning options. "summary"
    # asks for a readable summary of the reasoning (the raw reasoning stays hidden).
    # With Anthropic: provider="anthropic", model="claude-sonnet-4-5",
    # provider_kwargs={"thinking": {"type": "enabled", "budget_tokens": 2000}}.
    provider_kwargs={"reasoning": {"effort": "medium", "summary": "auto"}},
)
