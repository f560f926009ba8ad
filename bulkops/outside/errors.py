"""What an outside call can end in besides an answer."""

from __future__ import annotations

from bulkops.errors import BulkopsError


class CallFailed(BulkopsError):
    """The call for one item failed for good (a 4xx other than 408/409/429, an answer
    that is not what was asked for, a download too large): an item error carrying the
    provider's status and message. Retryable failures that ran out of attempts end here
    too, unless the provider as a whole is down (then ProviderUnavailable)."""

    def __init__(self, message: str, *, code: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class ProviderUnavailable(BulkopsError):
    """The provider keeps failing (connection refused, 5xx for most recent calls): no
    item is failed for it. The caller stops starting calls and tries again at
    `next_try_at` (epoch seconds); `reason` is what `Job.waitingReason` shows."""

    def __init__(self, provider: str, reason: str, *, next_try_at: float) -> None:
        super().__init__(reason)
        self.provider = provider
        self.reason = reason
        self.next_try_at = next_try_at
