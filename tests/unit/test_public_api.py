"""The public API: every exported name exists, is documented, and ``__all__`` is sorted."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from types import ModuleType
from typing import Any

import pytest

PUBLIC_MODULES = ["polos", "polos.sdk", "polos.client", "polos.testing", "polos.protocol"]


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def _isort_key(name: str) -> tuple[int, list[Any]]:
    """Ruff's RUF022 "isort-style" order: CONSTANTS, then Classes, then the rest; natural sort."""
    if len(name) > 1 and name.isupper():
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return group, natural


def _own_docstring(obj: Any) -> str | None:
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
    # dataclasses invent "Name(field: type, ...)" when the class has no docstring
    if (
        inspect.isclass(obj)
        and dataclasses.is_dataclass(obj)
        and doc
        and doc.startswith(f"{obj.__name__}(")
    ):
        return None
    return doc


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_api__every_exported_name_exists(module_name: str) -> None:
    module = _module(module_name)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
    assert len(set(module.__all__)) == len(module.__all__), "duplicate names in __all__"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_api__exported_classes_and_functions_have_docstrings(module_name: str) -> None:
    module = _module(module_name)
    checked = 0
    undocumented = []
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants, type aliases, adapters
        checked += 1
        doc = _own_docstring(obj)
        if not doc or not doc.strip():
            undocumented.append(name)
    assert checked > 0
    assert undocumented == []


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_api__all_is_sorted(module_name: str) -> None:
    names = list(_module(module_name).__all__)
    assert names == sorted(names, key=_isort_key)


def test_public_api__sort_key_matches_ruff_style() -> None:
    # The expected order is what ``ruff check --select RUF022 --fix`` produces.
    shuffled = [
        "workflow",
        "Queue",
        "DEFAULT_X",
        "__version__",
        "AttemptInput",
        "Ab2",
        "Ab10",
        "A2",
    ]
    assert sorted(shuffled, key=_isort_key) == [
        "A2",
        "DEFAULT_X",
        "Ab2",
        "Ab10",
        "AttemptInput",
        "Queue",
        "__version__",
        "workflow",
    ]


def test_public_api__docstring_check_detects_missing_docs() -> None:
    class Bare:
        pass

    class Child(Bare):
        """Documented."""

    class GrandChild(Child):
        pass

    @dataclasses.dataclass
    class Data:
        x: int

    def fn() -> None:
        pass

    assert _own_docstring(Bare) is None
    assert _own_docstring(Child) == "Documented."
    assert _own_docstring(GrandChild) is None, "docstrings must not be inherited"
    assert _own_docstring(Data) is None
    assert _own_docstring(fn) is None


def test_public_api__top_level_reexports_are_the_same_objects() -> None:
    import polos
    import polos.errors
    import polos.sdk

    for name in ("RetryPolicy", "Workflow", "WorkflowContext", "StepInfo", "workflow", "queue"):
        assert getattr(polos, name) is getattr(polos.sdk, name)
    for name in polos.errors.__all__:
        if name in polos.__all__:
            assert getattr(polos, name) is getattr(polos.errors, name)
    assert isinstance(polos.__version__, str)
    assert polos.__version__
