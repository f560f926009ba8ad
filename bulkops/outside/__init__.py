"""Calls to services outside bulkops (an AI provider, image hosts, webhook receivers): one
HTTP client per process, a rate limiter shared by every process through Redis, retries the
way well-kept SDKs do them, a circuit that stops spending items while a provider is down,
and a guard against private-network targets.

Operations reach it through `OutsideCalls` (built once per process, like the pools); it
sits beside the db package, so operations and services may use it and it uses neither.

The parts: `client` (what a call sends and reads), `attempts` (one call's attempts and
`Limits`), `limiter`, `retries`, `circuit`, `network` (the guard), `responses` (reading
answers and errors), `usage`."""

from bulkops.outside.attempts import Limits
from bulkops.outside.client import Downloaded, OutsideCalls, Posted
from bulkops.outside.errors import CallFailed, ProviderUnavailable
from bulkops.outside.network import check_public_url
from bulkops.outside.usage import Usage

__all__ = [
    "CallFailed",
    "Downloaded",
    "Limits",
    "OutsideCalls",
    "Posted",
    "ProviderUnavailable",
    "Usage",
    "check_public_url",
]
