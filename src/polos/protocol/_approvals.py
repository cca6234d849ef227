"""Signed approval links: ask for one, get a URL a human can open to decide."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

APPROVAL_LINK_DEFAULT_SECONDS = 24 * 3600
"""How long an approval link stays valid unless told otherwise (24 hours)."""

APPROVAL_LINK_MAX_SECONDS = 30 * 24 * 3600
"""The longest an approval link may stay valid (30 days)."""


class ApprovalLinkRequest(BaseModel):
    """Create a signed link deciding the suspend step ``step_key`` of an execution."""

    model_config = ConfigDict(extra="forbid")

    step_key: str = Field(
        min_length=1,
        max_length=250,
        description="The suspend step's key ('approval'); 'approval#2' names a repeat.",
    )
    approver: str = Field(
        min_length=1,
        max_length=200,
        description="Who the link is for (e.g. an e-mail address); the decision is "
        "recorded as made by 'link:<approver>'.",
    )
    expires_in_seconds: int = Field(
        default=APPROVAL_LINK_DEFAULT_SECONDS,
        ge=1,
        le=APPROVAL_LINK_MAX_SECONDS,
        description="How long the link stays valid (default 24 h, at most 30 days).",
    )


class ApprovalLink(BaseModel):
    """A signed approval link: whoever holds it can decide once, until it expires."""

    url: str = Field(description="Absolute URL of the approval page (GET shows it).")
    token: str = Field(description="The signed token (the last segment of the URL).")
    expires_at: int = Field(description="When the link stops working (epoch ms).")
    execution_id: str
    step_key: str = Field(description="The exact suspend step the link decides.")
    approver: str
