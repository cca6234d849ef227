"""Load a user's worker from a file or module, reporting import errors in one line."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from polos.client import PolosClient
from polos.sdk import Workflow
from polos.worker import Worker


class LoadError(Exception):
    """The target could not be imported or holds nothing to run."""


def _import(target: str) -> tuple[ModuleType, str | None]:
    module_part, _, attribute = target.partition(":")
    path = Path(module_part)
    try:
        if module_part.endswith(".py") or path.exists():
            if not path.is_file():
                raise LoadError(f"no such file: {module_part}")
            sys.path.insert(0, str(path.resolve().parent))
            spec = importlib.util.spec_from_file_location(path.stem, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
        else:
            sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_part)
    except LoadError:
        raise
    except BaseException as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        if isinstance(exc, SyntaxError):
            # The last frame is importlib's; the error knows where the bad line is.
            where = ""
        elif frames:
            where = f" ({frames[-1].filename}, line {frames[-1].lineno})"
        else:
            where = ""
        raise LoadError(
            f"importing {module_part} failed: {type(exc).__name__}: {exc}{where}"
        ) from None
    return module, attribute or None


def load_worker(target: str, client: PolosClient, max_concurrent: int | None = None) -> Worker:
    """The ``Worker`` defined by ``target``, or a new one serving its workflows."""
    module, attribute = _import(target)
    if attribute:
        found: Any = getattr(module, attribute, None)
        if found is None:
            raise LoadError(f"{module.__name__} has no attribute {attribute!r}")
        candidates = [found]
    else:
        candidates = list(vars(module).values())
    workers = [c for c in candidates if isinstance(c, Worker)]
    if workers:
        instance = workers[0]
        if max_concurrent is not None:
            instance.max_concurrent = max_concurrent
        return instance
    workflows = [c for c in candidates if isinstance(c, Workflow)]
    if not workflows:
        raise LoadError(f"{target} defines no Worker and no @workflow")
    return Worker(client=client, workflows=workflows, max_concurrent=max_concurrent or 100)
