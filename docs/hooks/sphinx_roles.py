"""Render Sphinx cross-reference roles in docstrings as code.

The docstrings of the package use roles such as ``:class:`~polos.sdk.StepRecorder``` and
``:func:`workflow```. mkdocstrings renders docstrings as Markdown, where a role would show
up literally; this turns each into an inline code span (``StepRecorder`` for the ``~``
form, the name as written otherwise), and ``Example::`` before an indented block into
``Example:`` (the indented block is a code block in Markdown too).

This file is both a griffe extension (``SphinxRoles``) and an MkDocs hook: listed under
``hooks:`` in ``mkdocs.yml``, it registers itself with the mkdocstrings Python handler by
its absolute path, so the build works from any directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe
from mkdocs.plugins import event_priority

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|exc|data|obj|const):`(~?)([^`]+)`")
LITERAL_BLOCK = re.compile(r"(\S)::\n(?=[ \t]*\n)")  # "Example::" + an indented block
LONE_MARKER = re.compile(r"^[ \t]*::\n(?=[ \t]*\n)", re.MULTILINE)  # a line of just "::"


def _replace(match: re.Match[str]) -> str:
    short, target = match.groups()
    if short:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ":" in obj.docstring.value:
            text = ROLE.sub(_replace, obj.docstring.value)
            text = LONE_MARKER.sub("", text)
            obj.docstring.value = LITERAL_BLOCK.sub(r"\1:\n", text)


@event_priority(100)  # before the mkdocstrings plugin reads its handler options
def on_config(config: Any, **kwargs: Any) -> Any:
    """MkDocs hook: add this file to the Python handler's griffe extensions."""
    plugin = config["plugins"]["mkdocstrings"]
    options = plugin.config["handlers"].setdefault("python", {}).setdefault("options", {})
    extensions = options.setdefault("extensions", [])
    extensions.append(f"{Path(__file__).resolve()}:SphinxRoles")
    return config
