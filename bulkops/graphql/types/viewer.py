"""Who the caller is, as the caller may ask."""

from __future__ import annotations

import strawberry

from bulkops.domain import Scope
from bulkops.models import Caller


@strawberry.type(description="The caller: its tenant, who it is, and what it may do.")
class Viewer:
    tenant: str = strawberry.field(description="The tenant's name.")
    subject: str = strawberry.field(
        description="An API token's name, or a signed-in user's subject (`sub`)."
    )
    scopes: list[str] = strawberry.field(
        description="What the caller was granted: read, write, admin, operator (each "
        "includes the ones before it)."
    )

    @classmethod
    def from_caller(cls, caller: Caller) -> Viewer:
        return cls(
            tenant=caller.tenant_name,
            subject=caller.subject,
            scopes=[scope.value for scope in Scope if scope in caller.scopes],
        )
