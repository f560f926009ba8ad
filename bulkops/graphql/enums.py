"""GraphQL enums, as in the public contract: the domain enums, registered with Strawberry.

`strawberry.enum` attaches its definition to the class it is given and returns that same
class, so the names below are the domain enums themselves. They are bound as plain aliases
and registered apart because mypy does not take a call's result as a type."""

from __future__ import annotations

import strawberry

from bulkops import domain

ExecutionMode = domain.ExecutionMode
JobStatus = domain.JobStatus
ProductStatus = domain.ProductStatus
Priority = domain.Priority
ErrorPolicy = domain.ErrorPolicy
RetryScope = domain.RetryScope
ExportFormat = domain.ExportFormat
ChainRunOn = domain.ChainRunOn
ChainSelection = domain.ChainSelection

for _enum in (
    ExecutionMode,
    JobStatus,
    ProductStatus,
    Priority,
    ErrorPolicy,
    RetryScope,
    ExportFormat,
    ChainRunOn,
    ChainSelection,
):
    strawberry.enum(_enum)
