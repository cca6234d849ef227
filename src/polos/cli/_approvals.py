"""``polos approval-link``: a signed URL to approve or reject a suspended execution."""

from __future__ import annotations

import re

import click

from polos.protocol import APPROVAL_LINK_MAX_SECONDS

from ._common import client_from, err_console, fmt_time, run_async

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``45s``, ``30m``, ``2h``, ``7d``, ``1w`` or ``1h30m``."""
    raw = text.strip().lower().replace(" ", "")
    try:
        return float(raw)
    except ValueError:
        pass
    parts = _PART.findall(raw)
    if not raw or "".join(n + u for n, u in parts) != raw:
        raise click.BadParameter(
            f"{text!r} is not a duration: use e.g. 90, 45s, 30m, 2h, 7d or 1h30m"
        )
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    seconds = parse_duration(value)
    if not 1 <= seconds <= APPROVAL_LINK_MAX_SECONDS:
        raise click.BadParameter("must be between 1 second and 30 days")
    return seconds


@click.command("approval-link")
@click.argument("execution_id")
@click.argument("step_key")
@click.option(
    "--approver",
    required=True,
    help="Who the link is for, e.g. an e-mail (recorded as link:<approver>).",
)
@click.option(
    "--expires",
    "expires_in",
    default="24h",
    callback=_duration,
    show_default=True,
    help="How long the link works: 90 (seconds), 30m, 2h, 7d (at most 30d).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the link, token and expiry as JSON.")
@click.pass_context
@run_async
async def approval_link(
    ctx: click.Context,
    execution_id: str,
    step_key: str,
    approver: str,
    expires_in: float,
    as_json: bool,
) -> None:
    """Print a signed URL that approves or rejects a suspended execution once.

    EXECUTION_ID is suspended at STEP_KEY (`polos waits --kind suspend` lists them).
    Send the URL to the approver: whoever holds it can decide until it expires or is used.
    """
    async with client_from(ctx) as client:
        link = await client.approval_link(
            execution_id, step_key, approver=approver, expires_in=expires_in
        )
    if as_json:
        click.echo(link.model_dump_json(indent=2))
        return
    click.echo(link.url)  # plain, unwrapped: safe to pipe or paste
    err_console.print(
        f"for {approver}, step {link.step_key}, expires {fmt_time(link.expires_at)} UTC",
        style="dim",
        highlight=False,
        markup=False,
    )
