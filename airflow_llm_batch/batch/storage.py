"""The work dir as the core sees it: anything path-like with ``/``, ``open``, ``mkdir``, ``exists``.

Airflow's ``ObjectStoragePath`` (local folder, ``s3://``, ``gs://``) and ``pathlib.Path`` both fit,
so the core never imports Airflow and unit tests run on a temporary folder.
"""

from __future__ import annotations

from typing import IO, Any, Protocol


class StoragePath(Protocol):
    def __truediv__(self, other: str) -> StoragePath: ...

    def open(self, mode: str = ..., *args: Any, **kwargs: Any) -> IO[Any]: ...

    def mkdir(self, parents: bool = ..., exist_ok: bool = ...) -> None: ...

    def exists(self) -> bool: ...

    @property
    def name(self) -> str: ...

    @property
    def parent(self) -> StoragePath: ...


def uri_of(path: StoragePath) -> str:
    """The path as a string that ``ObjectStoragePath`` (or ``pathlib``) turns back into the same path.

    Not ``as_uri()``: it percent-encodes, and object-store paths are not decoded again.
    """
    return str(path)
