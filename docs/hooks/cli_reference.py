"""MkDocs hook: expand ``<!-- cli: module:attribute prog -->`` into a reference of a click CLI.

The reference is built from the click commands themselves (names, arguments, options,
environment variables, defaults and help text) each time the site is built, so
``docs/cli.md`` cannot fall behind the code. Every command becomes a ``###`` heading
(``polos events publish``), in the order of the command tree; the root command's own
help and options go under the heading the page gives it.

``<!-- cli-flags: module:attribute prog -->`` expands into one table of every command and
its flags, each command linking to its section of ``cli.md``.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import click

MARKER = re.compile(r"^<!--\s*(cli|cli-flags):\s*([\w.]+):(\w+)\s+([\w-]+)\s*-->\s*$", re.MULTILINE)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace each marker with the reference (or the flag table) of the command it names."""
    return MARKER.sub(_expand, markdown)


def _expand(match: re.Match[str]) -> str:
    kind, module, attribute, prog = match.groups()
    command = getattr(importlib.import_module(module), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{module}:{attribute} is not a click command")
    ctx = click.Context(command, info_name=prog)
    parts: list[str] = []
    if kind == "cli":
        _walk(command, ctx, parts)
    else:
        parts += ["| Command | Flags |", "|---|---|"]
        _flag_rows(command, ctx, parts)
    return "\n".join(parts)


def _flag_rows(command: click.Command, ctx: click.Context, out: list[str]) -> None:
    options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
    if options:
        flags = ", ".join(_flag_text(o) for o in options)
        path = ctx.command_path
        out.append(f"| [`{path}`](cli.md#{_anchor(path)}) | {flags} |")
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                _flag_rows(sub, click.Context(sub, info_name=name, parent=ctx), out)


def _walk(command: click.Command, ctx: click.Context, out: list[str]) -> None:
    out.extend(_section(command, ctx))
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            _walk(sub, click.Context(sub, info_name=name, parent=ctx), out)


def _section(command: click.Command, ctx: click.Context) -> list[str]:
    path = ctx.command_path
    # The page gives the root command its own heading; each subcommand gets one here.
    lines = [] if ctx.parent is None else [f"### `{path}`", ""]
    help_text = _clean(command.help or command.short_help or "")
    if help_text:
        lines += [help_text, ""]
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    lines += ["```text", usage, "```", ""]

    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
    if arguments:
        names = ", ".join(f"`{a.human_readable_name}`" + _nargs(a) for a in arguments)
        lines += [f"Arguments: {names}.", ""]
    if options:
        lines += ["| Option | Environment | Default | Meaning |", "|---|---|---|---|"]
        lines += [_option_row(o, ctx) for o in options]
        lines.append("")
    if isinstance(command, click.Group):
        subs = [
            (name, sub)
            for name in command.list_commands(ctx)
            if (sub := command.get_command(ctx, name)) is not None and not sub.hidden
        ]
        if subs:
            lines += ["Commands:", ""]
            lines += [
                f"- [`{name}`](#{_anchor(f'{path} {name}')}): "
                f"{_cell(sub.get_short_help_str(limit=120))}"
                for name, sub in subs
            ]
            lines.append("")
    return lines


def _flag_text(option: click.Option) -> str:
    """``--limit`` (``-n``), ``--reload`` / ``--no-reload``, with the variable if any."""
    text = f"`{option.opts[0]}`"
    if option.opts[1:]:
        text += " (" + ", ".join(f"`{n}`" for n in option.opts[1:]) + ")"
    if option.secondary_opts:
        text += " / " + " / ".join(f"`{n}`" for n in option.secondary_opts)
    if isinstance(option.envvar, str):
        text += f" or `{option.envvar}`"
    return text


def _nargs(argument: click.Argument) -> str:
    if argument.nargs == -1:
        return " (one or more)" if argument.required else " (any number)"
    return "" if argument.required else " (optional)"


def _option_row(option: click.Option, ctx: click.Context) -> str:
    names = ", ".join(f"`{n}`" for n in [*option.opts, *option.secondary_opts])
    metavar = "" if option.is_flag else _type_text(option, ctx)
    if metavar:
        names += f" {metavar}"
    env = option.envvar
    env_text = ", ".join(f"`{e}`" for e in ([env] if isinstance(env, str) else env or []))
    help_text = _cell(_clean(option.help or ""))
    if option.multiple and "repeatable" not in help_text.lower():
        help_text = (help_text + " Repeatable.").strip()
    if option.required:
        help_text = ("Required. " + help_text).strip()
    return f"| {names} | {env_text} | {_default(option)} | {help_text} |"


def _type_text(option: click.Option, ctx: click.Context) -> str:
    kind = option.type
    if isinstance(kind, click.Choice):
        # A pipe inside a code span does not split a table cell.
        return "`" + "|".join(str(c) for c in kind.choices) + "`"
    if isinstance(kind, click.IntRange | click.FloatRange):
        low = "" if kind.min is None else str(kind.min)
        high = "" if kind.max is None else str(kind.max)
        return f"{kind.name.split()[0].upper()} ({low}..{high})"
    return kind.name.upper()


def _default(option: click.Option) -> str:
    value = option.default
    if callable(value) or value is None or value is False or value == "" or value == ():
        return ""
    if type(value).__name__ == "Sentinel":  # click >= 8.3: no default given
        return ""
    if value is True:  # an on/off pair (--reload/--no-reload) that is on by default
        return f"`{option.opts[0]}`" if option.secondary_opts else "on"
    return f"`{value}`"


def _clean(text: str) -> str:
    """Help text as Markdown: ``code`` becomes `code`; ``<`` and ``>`` outside code are
    escaped (``link:<approver>`` is not an HTML tag)."""
    text = inspect.cleandoc(text).replace("\b\n", "").replace("\b", "")
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # the even parts are outside code spans
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _cell(text: str) -> str:
    """One table cell: one line, pipes outside code spans escaped."""
    parts = " ".join(text.split()).split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("|", "\\|")
    return "`".join(parts)


def _anchor(heading: str) -> str:
    # The anchor Python-Markdown's toc extension gives the heading "`polos run`".
    return re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", heading).strip().lower())
