"""Parallel review: three reviewer agents look at a pull request at once; a workflow waits
for all of them and combines their verdicts.

Run it with `python worker.py` (or `polos worker worker.py`), then `python main.py`.
"""

import asyncio
from typing import Literal

from fake_model import answer
from pydantic import BaseModel

from polos import Agent, PolosClient, Worker, WorkflowContext, tool, workflow
from polos.testing import fake_llm_unless_key

# Without OPENAI_API_KEY the agents talk to a bundled fake model server (see fake_model.py).
fake_llm_unless_key(answer)

GUIDELINES = {
    "security": ["never eval() input", "parameterise every SQL query", "no secrets in code"],
    "performance": ["no queries inside loops", "paginate large results"],
    "style": ["lines of at most 100 characters", "public functions have docstrings"],
}


@tool
def team_guidelines(area: Literal["security", "performance", "style"]) -> list[str]:
    """The team's review checklist for one area."""
    return GUIDELINES[area]


class Review(BaseModel):
    approve: bool
    summary: str
    issues: list[str] = []


def reviewer(area: str) -> Agent:
    return Agent(
        id=f"{area}_reviewer",
        provider="openai",
        model="gpt-4o-mini",
        system_prompt=(
            f"You review pull requests for {area} only. First call team_guidelines with "
            f"area '{area}'. Then list the {area} issues of the added lines (+) and approve "
            "unless one of them must be fixed before merging."
        ),
        tools=[team_guidelines],
        output_schema=Review,  # the answer is validated into a Review
    )


REVIEWERS = {area: reviewer(area) for area in ("security", "performance", "style")}


class PullRequest(BaseModel):
    title: str
    diff: str


class ReviewReport(BaseModel):
    title: str
    approved: bool
    reviews: dict[str, Review]


@workflow
async def review_pull_request(ctx: WorkflowContext, pr: PullRequest) -> ReviewReport:
    """Fan out to every reviewer, wait for all (holding no worker), then combine."""
    request = f"Pull request: {pr.title}\n\n{pr.diff}"
    outcomes = await ctx.step.batch_agent_invoke_and_wait(
        "reviews", [agent.with_input(request) for agent in REVIEWERS.values()]
    )
    reviews = {}
    for area, outcome in zip(REVIEWERS, outcomes, strict=True):
        if outcome.success:
            reviews[area] = outcome.result.result  # the AgentResult's Review
        else:  # one failed reviewer does not fail the others; it counts as a "no"
            why = outcome.error.message if outcome.error else outcome.status
            reviews[area] = Review(approve=False, summary=f"reviewer failed: {why}")
    approved = all(r.approve for r in reviews.values())
    return ReviewReport(title=pr.title, approved=approved, reviews=reviews)


client = PolosClient()  # POLOS_API_URL (default http://127.0.0.1:8080), POLOS_API_KEY, ...
worker = Worker(client=client, workflows=[review_pull_request], agents=list(REVIEWERS.values()))

if __name__ == "__main__":
    asyncio.run(worker.run())
