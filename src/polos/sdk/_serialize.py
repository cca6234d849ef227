"""JSON encoding of step outputs, payloads and results, and rebuilding them with their types.

Values are stored as JSON so that the UI and API can show them. Pydantic
models, dataclasses, datetimes, UUIDs, enums, sets and tuples are supported.
On replay a value is rebuilt with, in order of preference, the callable's
return annotation, then the class recorded with the value, then as plain JSON.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import typing
from collections.abc import Callable
from typing import Any

import pydantic
import pydantic_core

from polos.errors import SerializationError


def to_json_value(value: Any, what: str) -> Any:
    """Turn ``value`` into JSON-compatible data, or raise :class:`SerializationError`."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        return pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError as exc:
        raise SerializationError(
            f"{what} returned a {type(value).__name__}, which cannot be stored as JSON: {exc}. "
            "Return JSON-compatible data, a pydantic model or a dataclass."
        ) from exc


_PLAIN_JSON = (type(None), bool, int, float, str, dict, list)


def type_name(value: Any) -> str | None:
    """``module:QualName`` of a value that JSON alone cannot rebuild (``None`` for plain JSON).

    Models, dataclasses, datetimes, UUIDs, enums, tuples, sets... are recorded
    so that replay returns the same type as the first run did.
    """
    cls = type(value)
    if cls in _PLAIN_JSON or isinstance(value, type):
        return None
    return f"{cls.__module__}:{cls.__qualname__}"


@functools.lru_cache(maxsize=512)
def _import_type(name: str) -> Any:
    module_name, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


@functools.lru_cache(maxsize=1024)
def _adapter(tp: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(tp)


def _useful(annotation: Any) -> bool:
    return annotation not in (inspect.Signature.empty, Any, None, type(None), object)


def return_annotation(fn: Callable[..., Any]) -> Any:
    """The resolved return annotation of ``fn`` (awaitables unwrapped), or ``Any``."""
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        return Any
    annotation = hints.get("return", Any)
    origin = typing.get_origin(annotation)
    if origin is not None and getattr(origin, "__name__", "") in ("Coroutine", "Awaitable"):
        annotation = typing.get_args(annotation)[-1]
    return annotation


def from_json_value(value: Any, recorded_type: str | None, annotation: Any = Any) -> Any:
    """Rebuild a stored value: by annotation, else by recorded class, else as JSON."""
    if _useful(annotation):
        try:
            return _adapter(annotation).validate_python(value)
        except (pydantic.ValidationError, pydantic.PydanticSchemaGenerationError, TypeError):
            pass
    if recorded_type:
        try:
            return _adapter(_import_type(recorded_type)).validate_python(value)
        except Exception:
            pass
    return value
