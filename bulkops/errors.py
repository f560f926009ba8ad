"""The root exception and the small ones shared across layers."""

from __future__ import annotations


class BulkopsError(Exception):
    """Something went wrong in bulkops."""

    code = "INTERNAL"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class InputError(BulkopsError):
    """The input is not valid."""

    code = "INVALID_INPUT"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        field: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.field = field or []


class NotFoundError(InputError):
    """The thing asked for does not exist or is not yours."""

    code = "NOT_FOUND"


class AuthenticationError(BulkopsError):
    """A valid bearer token is required."""

    code = "UNAUTHENTICATED"
