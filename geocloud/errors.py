"""Errors a user can act on.

Every error geocloud raises for bad input or a bad environment says what is wrong, where (file,
row, field, parameter) and what to do. The CLI prints them as one message with a non-zero exit
code instead of a traceback; the server turns them into 4xx answers.
"""


class GeocloudError(Exception):
    """Base class: ``what`` is wrong, ``where`` it is, and the ``fix``."""

    exit_code = 1

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        self.what, self.where, self.fix = what, where, fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        return f"{text}\n  fix: {self.fix}" if self.fix else text


class ConfigError(GeocloudError):
    """The catalog, a pipeline file or the settings are wrong."""

    exit_code = 3


class DatabaseError(GeocloudError):
    """The database is unreachable, misconfigured or lacks PostGIS."""

    exit_code = 4


class DatabaseUnavailable(DatabaseError):
    """The database is down or did not answer in time: a request may succeed if tried again later."""


class InputError(GeocloudError):
    """A source file handed to the ETL cannot be loaded as it is."""

    exit_code = 5


class NotFound(GeocloudError):
    """A named layer, pipeline, run or version does not exist."""

    exit_code = 6


class Conflict(GeocloudError):
    """Another run holds the layer, or the requested change conflicts with the current state."""

    exit_code = 7


class PortalError(GeocloudError):
    """A publishing target (TGOS, data.gov.tw) is unreachable or refused what was sent."""

    exit_code = 8


class Refused(GeocloudError):
    """Publishing refused: the layer is not public, or falls below the gold quality mark."""

    exit_code = 9
