"""The one exception type the core raises for anything a user should read.

The CLI's error boundary turns a :class:`MailcliError` into a single line on
stderr and its ``exit_code``: 2 for invalid input (nothing was written), 1 for
an operational failure (the database, the gateway, the file system).
"""

from __future__ import annotations

INVALID_INPUT = 2
OPERATIONAL = 1


class MailcliError(Exception):
    """A failure explained in one line to the operator."""

    def __init__(
        self,
        message: str,
        *,
        exit_code: int = OPERATIONAL,
        field: str | None = None,
        details: list[str] | None = None,
    ):
        self.message = message
        self.exit_code = exit_code
        self.field = field
        self.details = details or []  # lines shown before the message, e.g. each bad row of an import
        super().__init__(message)

    def __str__(self) -> str:
        if self.field:
            return f"{self.field}: {self.message}"
        return self.message


def invalid(field: str | None, reason: str) -> MailcliError:
    """An invalid-input error naming the field and the reason (exit code 2)."""
    return MailcliError(reason, exit_code=INVALID_INPUT, field=field)


def operational(message: str) -> MailcliError:
    """An operational failure (exit code 1)."""
    return MailcliError(message, exit_code=OPERATIONAL)
