"""A support desk: a router agent picks a specialist, a coordinator workflow hands off to it.

Run it with ``python worker.py`` (or ``polos dev worker.py``), then ``python main.py``.
"""

import asyncio
from typing import Literal

from fake_model import answer
from pydantic import BaseModel

from polos import Agent, PolosClient, Worker, WorkflowContext, tool, workflow
from polos.testing import fake_llm_unless_key

# Without OPENAI_API_KEY the agents talk to a local fake model server (see fake_model.py).
fake_llm_unless_key(answer)


# ---------------------------------------------------------------- the router


class Route(BaseModel):
    specialist: Literal["billing", "tech"]
    reason: str


router = Agent(
    id="support_router",
    provider="openai",
    model="gpt-4o-mini",
    system_prompt=(
        "You route customer support questions to one specialist. Choose 'billing' for "
        "payments, invoices, refunds and plans; 'tech' for bugs, errors, outages and how-to "
        "questions. Give a one-sentence reason."
    ),
    output_schema=Route,  # the answer is validated into a Route, not parsed from text
)


# ---------------------------------------------------------------- the specialists and their tools


@tool
def lookup_invoices(customer_id: str) -> list[dict]:
    """The customer's invoices of the last two months."""
    return [
        {"id": "inv-1042", "month": "2025-03", "amount": 49.0, "status": "paid"},
        {"id": "inv-1043", "month": "2025-03", "amount": 49.0, "status": "paid"},
        {"id": "inv-1077", "month": "2025-04", "amount": 49.0, "status": "paid"},
    ]


INCIDENTS = {"uploads": "INC-311: uploads over 10 MB time out; a fix is rolling out"}


@tool
def check_status(component: str) -> dict:
    """The current status of a product component: 'api', 'uploads', 'login' or 'billing'."""
    incident = INCIDENTS.get(component)
    status = "degraded" if incident else "operational"
    return {"component": component, "status": status, "incident": incident}


billing_agent = Agent(
    id="billing_agent",
    provider="openai",
    model="gpt-4o-mini",
    system_prompt=(
        "You are the billing specialist. Look up the customer's invoices before answering. "
        "Be concise and say what you will do."
    ),
    tools=[lookup_invoices],
)

tech_agent = Agent(
    id="tech_agent",
    provider="openai",
    model="gpt-4o-mini",
    system_prompt=(
        "You are the technical support specialist. Check the status of the component "
        "involved before answering. Be concise and give a next step."
    ),
    tools=[check_status],
)

SPECIALISTS = {"billing": billing_agent, "tech": tech_agent}


# ---------------------------------------------------------------- the coordinator


class Ticket(BaseModel):
    customer_id: str
    question: str


class Reply(BaseModel):
    route: str
    reason: str
    answer: str
    tools_used: list[str]


@workflow
async def support_desk(ctx: WorkflowContext, ticket: Ticket) -> Reply:
    # 1. Ask the router which specialist should answer (a child execution, recorded).
    route = await ctx.step.agent_invoke_and_wait("route", router.with_input(ticket.question))
    specialist = SPECIALISTS[route.result.specialist]

    # 2. Hand off to the specialist with the context it needs: who asks, what, and why it
    #    was chosen. A crash after step 1 does not route again: the route is replayed.
    handoff = (
        f"Customer id: {ticket.customer_id}\n"
        f"Question: {ticket.question}\n"
        f"Why you: {route.result.reason}"
    )
    reply = await ctx.step.agent_invoke_and_wait("answer", specialist.with_input(handoff))

    return Reply(
        route=route.result.specialist,
        reason=route.result.reason,
        answer=reply.result,
        tools_used=[call.name for call in reply.tool_results],
    )


client = PolosClient()
worker = Worker(
    client=client,
    workflows=[support_desk],
    agents=[router, billing_agent, tech_agent],
)

if __name__ == "__main__":
    asyncio.run(worker.run())
