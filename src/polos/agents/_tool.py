"""``@tool``: a Python function an agent's model may call.

The model sees a name, a description (the docstring) and a JSON schema built from
the function's signature (or from its single pydantic-model parameter). The agent
loop validates the model's arguments against the same schema before calling, and
runs each call as a recorded ``tool`` step: a call that completed is never repeated
on replay, after a crash or a resume.
"""

from __future__ import annotations

import functools
import inspect
import json
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, overload

import pydantic

from polos.errors import ConfigurationError
from polos.llm import ToolSpec
from polos.protocol import StepKind
from polos.sdk import RetryPolicy, Workflow, WorkflowContext

from ._control import call_user_fn

if TYPE_CHECKING:
    from polos.sdk import WorkflowContext as _Ctx

ApprovalMode = Literal["always", "none"]

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
TOOL_RETRY = RetryPolicy(max_attempts=1)
"""Tool calls are not retried by default: the error goes back to the model, which decides."""


def _check_name(name: str) -> str:
    # The strictest of the providers' rules (OpenAI: ^[a-zA-Z0-9_-]{1,64}$).
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise ConfigurationError(
            f"tool name {name!r} must be 1-64 letters, digits, '_' or '-' (a provider rule)"
        )
    return name


def _wants_context(param: inspect.Parameter, hints: dict[str, Any]) -> bool:
    annotation = hints.get(param.name, param.annotation)
    return annotation is WorkflowContext or param.name == "ctx"


class Tool:
    """A function the model may call. Create it with :func:`tool`.

    Attributes:
        name: the name the model calls it by (the function name by default).
        description: what the model is told it does (the docstring by default).
        parameters: the JSON schema of its arguments.
        approval: ``"always"``: a human approves (or rejects, with feedback) every call
            before it runs; the agent waits without holding a worker.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        approval: ApprovalMode | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.fn = fn
        self.name = _check_name(name or fn.__name__)
        self.description = (description or inspect.getdoc(fn) or "").strip()
        if approval not in (None, "always", "none"):
            raise ConfigurationError(f"approval must be 'always' or 'none', not {approval!r}")
        self.approval: ApprovalMode = approval or "none"
        self.retry_policy = retry_policy or TOOL_RETRY
        self.takes_ctx, self._model, self._single = self._signature(fn)
        """Whether the function's first parameter receives the workflow context."""
        self.parameters = self._model.model_json_schema()
        self.parameters.pop("title", None)

    def _signature(
        self, fn: Callable[..., Any]
    ) -> tuple[bool, type[pydantic.BaseModel], str | None]:
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # an annotation that cannot be resolved: fall back to the raw ones
            hints = {}
        params = list(inspect.signature(fn).parameters.values())
        takes_ctx = bool(params) and _wants_context(params[0], hints)
        if takes_ctx:
            params = params[1:]
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise ConfigurationError(f"tool {self.name!r} cannot take *args or **kwargs")
        if len(params) == 1:
            only = hints.get(params[0].name, params[0].annotation)
            if isinstance(only, str):
                raise ConfigurationError(
                    f"cannot resolve the annotation {only!r} of tool {self.name!r}: "
                    "define the type at module level"
                )
            if isinstance(only, type) and issubclass(only, pydantic.BaseModel):
                return takes_ctx, only, params[0].name
        fields: dict[str, Any] = {}
        for p in params:
            annotation = hints.get(p.name, p.annotation)
            if annotation is inspect.Parameter.empty:
                annotation = Any
            if isinstance(annotation, str):
                raise ConfigurationError(
                    f"cannot resolve the annotation {annotation!r} of parameter {p.name!r} of "
                    f"tool {self.name!r}: define the type at module level"
                )
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (annotation, default)
        model = pydantic.create_model(f"{self.name}_arguments", **fields)
        return takes_ctx, model, None

    def spec(self) -> ToolSpec:
        """The tool as the model sees it."""
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)

    def validate(self, arguments: dict[str, Any]) -> pydantic.BaseModel:
        """The model's arguments, validated (raises ``pydantic.ValidationError``)."""
        return self._model.model_validate(arguments)

    async def call(self, ctx: _Ctx | None, arguments: dict[str, Any]) -> Any:
        """Validate ``arguments`` and call the function (a sync one runs in a thread)."""
        model = self.validate(arguments)
        kwargs: dict[str, Any]
        if self._single is not None:
            kwargs = {self._single: model}
        else:
            kwargs = {name: getattr(model, name) for name in type(model).model_fields}
        args = (ctx,) if self.takes_ctx else ()
        return await call_user_fn(functools.partial(self.fn, *args, **kwargs))

    async def execute(self, ctx: WorkflowContext, key: str, arguments: dict[str, Any]) -> str:
        """Run one call as a recorded ``tool`` step; the model-facing text is what is recorded,
        so that the conversation is byte-for-byte the same on replay."""

        async def call_as_text(arguments: dict[str, Any]) -> str:
            return tool_output_text(await self.call(ctx, arguments))

        text = await ctx.step.run_as(
            StepKind.TOOL, key, call_as_text, (arguments,), retry_policy=self.retry_policy
        )
        return str(text)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the undecorated function (handy in unit tests)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r})"


class WorkflowTool(Tool):
    """A workflow used as a tool: each call is a child execution the agent waits for."""

    def __init__(self, workflow: Workflow[Any], *, name: str | None = None, description: str = ""):
        self.workflow = workflow
        super().__init__(
            workflow.fn,
            name=name or workflow.id.replace(".", "_").replace(":", "_").replace("/", "_"),
            description=description or workflow.description or "",
        )

    def _signature(
        self, fn: Callable[..., Any]
    ) -> tuple[bool, type[pydantic.BaseModel], str | None]:
        _, model, single = super()._signature(fn)
        return False, model, single

    async def execute(self, ctx: WorkflowContext, key: str, arguments: dict[str, Any]) -> str:
        model = self.validate(arguments)
        payload: Any = model if self._single else model.model_dump(mode="json")
        if self._single is None and len(type(model).model_fields) == 1:
            payload = next(iter(payload.values()))
        return tool_output_text(await ctx.step.invoke_and_wait(key, self.workflow, payload))


def as_tool(value: Tool | Workflow[Any] | Callable[..., Any]) -> Tool:
    """A tool from what ``Agent(tools=[...])`` accepts: a Tool, a workflow or a function."""
    if isinstance(value, Tool):
        return value
    if isinstance(value, Workflow):
        return WorkflowTool(value)
    if callable(value):
        return Tool(value)
    raise ConfigurationError(f"{value!r} is not a tool: decorate it with @tool")


def tool_output_text(value: Any) -> str:
    """A tool's result as the text the model reads (JSON for anything but a string)."""
    if isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    approval: ApprovalMode | None = None,
    retry_policy: RetryPolicy | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    approval: ApprovalMode | None = None,
    retry_policy: RetryPolicy | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a function callable by agents: ``@tool`` or ``@tool(approval="always")``.

    The function may be sync (it runs in a thread) or async; its parameters (or its one
    pydantic-model parameter) become the JSON schema the model fills in; a first
    parameter ``ctx: WorkflowContext`` receives the agent's context. Errors are given
    back to the model as the tool's result (``retry_policy`` retries them first).
    """

    def decorate(func: Callable[..., Any]) -> Tool:
        return Tool(
            func, name=name, description=description, approval=approval, retry_policy=retry_policy
        )

    return decorate(fn) if fn is not None else decorate
