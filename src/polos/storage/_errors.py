"""Driver errors become :class:`~polos.errors.StorageError`, in this one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc

from polos.errors import InvalidValueError, StorageError


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return url


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Re-raise database driver errors as ``StorageError`` with a one-line explanation."""
    try:
        yield
    except sa_exc.DBAPIError as exc:
        original = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        if exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        ):
            raise StorageError(f"database {_safe_url(url)} is unavailable: {original}") from exc
        if isinstance(exc, sa_exc.DataError):
            raise InvalidValueError(f"the database refused a value: {original}") from exc
        raise StorageError(f"database error: {original}") from exc
