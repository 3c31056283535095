"""One exception tree for the whole package.

The CLI translates every `VidlakeError` into a one-line message (tracebacks only with
``--debug``); anything else escaping the library is a bug and shows a traceback.
"""

from __future__ import annotations


class VidlakeError(Exception):
    """Base of every error the library raises on purpose."""


class LakeNotFound(VidlakeError):
    """No lake at the given URI (run `vidlake init`)."""


class LakeExists(VidlakeError):
    """`init` on a URI that already holds a lake."""


class LakeBusy(VidlakeError):
    """Another writer holds the lake's write lock."""


class BatchNotFound(VidlakeError):
    """An `--as-of`, `diff` or `restore` names a batch the log does not have."""


class InputError(VidlakeError):
    """Bad input data: names the file and, where it can, the row and the value at fault."""

    def __init__(self, message: str, *, path: str | None = None, row: int | None = None):
        self.path = path
        self.row = row
        where = ""
        if path is not None:
            where = f"{path}"
            if row is not None:
                where += f", row {row}"
            where += ": "
        super().__init__(where + message)


class SchemaError(VidlakeError):
    """Data does not fit the lake's declared schema (wrong dimension, mixed models...)."""


class QueryError(VidlakeError):
    """A SQL query failed or tried to write through the read-only query path."""


class MissingDependency(VidlakeError):
    """An optional backend is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the '{package}' package: pip install 'vidprom-lake[{extra}]'"
        )
        self.package = package
        self.extra = extra
