"""A schedule's mutation run through the schema itself: its stored arguments are the
mutation's variables, coerced by GraphQL and handed to the mutation's own resolver, so a
schedule checks and converts them exactly as a client's call is checked and converted.

Uploads are not schedulable: a schedule stores JSON, and a file is not JSON. A mutation
that needs one (importProducts) is refused; one that takes rows or an upload
(matchProducts, fetchProductImages) is scheduled with its rows.

The schedule sets the run's options itself: `mode` BACKGROUND (a tick always makes a job),
`dryRun` and the idempotency key (the tick's); the stored `options` may give `priority`
and `errorPolicy`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLError,
    GraphQLInputType,
    Undefined,
    get_named_type,
    is_non_null_type,
)
from graphql.utilities import validate_input_value
from starlette.requests import Request

from bulkops.domain import Scope
from bulkops.errors import InputError
from bulkops.graphql.context import Context, GraphQLState
from bulkops.models import Caller, JobState
from bulkops.services import job_reads
from bulkops.services.container import Services
from bulkops.services.progress import Broker
from bulkops.services.schedules import Schedule
from bulkops.services.submit import COUNT_ONLY

ARGUMENTS = ["input", "arguments"]


@dataclass(frozen=True)
class Keeper:
    """What keeps a mutation's arguments to run it later (a schedule, a chain), the
    options it sets itself, and the codes its refusals carry."""

    name: str
    sets: tuple[str, ...]
    option_code: str
    upload_code: str


# A schedule sets these options itself on every run.
SCHEDULE = Keeper(
    "schedule",
    ("mode", "dryRun", "idempotencyKey"),
    option_code="OPTION_SET_BY_SCHEDULE",
    upload_code="UPLOAD_NOT_SCHEDULABLE",
)


def _context(services: Services, tenant_id: str, subject: str | None) -> Context:
    """A request's context for the schedule's tenant, acting with the write scope."""
    request = Request({"type": "http", "method": "POST", "path": "/graphql", "headers": []})
    caller = Caller(
        tenant_id=tenant_id,
        tenant_name=tenant_id,
        subject=subject or "schedule",
        scopes=frozenset({Scope.WRITE}),
    )
    state = GraphQLState(services=services, broker=Broker(services.redis))
    return Context(request=request, response=None, state=state, caller=caller)


class SchemaRunner:
    """Runs bulk mutations of `schema` from a schedule's stored arguments
    (`bulkops.services.schedules.MutationRunner`)."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema

    def arguments_of(
        self, operation: str, field: Sequence[str] = ("input", "operation")
    ) -> dict[str, GraphQLArgument]:
        """The mutation's arguments; UNKNOWN_OPERATION naming `field` when there is none."""
        found = self.schema._schema.mutation_type.fields.get(operation)
        if found is None:
            raise InputError(
                f"There is no bulk mutation {operation!r}.",
                code="UNKNOWN_OPERATION",
                field=list(field),
            )
        args: dict[str, GraphQLArgument] = found.args
        return args

    def check(
        self,
        operation: str,
        arguments: Any,
        *,
        field: Sequence[str] = ("input", "arguments"),
        operation_field: Sequence[str] = ("input", "operation"),
        keeper: Keeper = SCHEDULE,
    ) -> dict[str, Any]:
        """The stored arguments, checked against the mutation's argument types; InputError
        with the path inside `arguments` (at `field`) for the first one refused; options the
        `keeper` sets itself are refused too."""
        path = list(field)
        if not isinstance(arguments, dict):
            raise InputError(
                "arguments is an object of the mutation's arguments, e.g. "
                '{"selection": {"filter": {}}, "status": "ARCHIVED"}.',
                code="INVALID_ARGUMENTS",
                field=path,
            )
        args = self.arguments_of(operation, operation_field)
        for name in arguments:
            if name not in args:
                raise InputError(
                    f"{operation} takes no argument {name!r}.",
                    code="UNKNOWN_ARGUMENT",
                    field=[*path, name],
                )
        for name, arg in args.items():
            given = arguments.get(name)
            if get_named_type(arg.type).name == "Upload":
                if given is not None or (is_non_null_type(arg.type) and name not in arguments):
                    raise InputError(
                        f"{operation} cannot take an upload in a {keeper.name}: a "
                        f"{keeper.name} stores JSON arguments, not files.",
                        code=keeper.upload_code,
                        field=[*path, name],
                    )
                continue
            if name not in arguments:
                if is_non_null_type(arg.type) and arg.default_value is Undefined:
                    raise InputError(
                        f"{operation} needs the argument {name!r}.",
                        code="MISSING_ARGUMENT",
                        field=[*path, name],
                    )
                continue
            _coerce(given, arg.type, [*path, name])
            if name == "options" and isinstance(given, dict):
                for option in keeper.sets:
                    if option in given:
                        raise InputError(
                            f"A {keeper.name} sets options.{option} itself.",
                            code=keeper.option_code,
                            field=[*path, name, option],
                        )
        return arguments

    async def count(
        self,
        services: Services,
        tenant_id: str,
        *,
        subject: str | None,
        operation: str,
        arguments: Any,
    ) -> int:
        """Check `arguments` through the mutation and count what they select now."""
        checked = self.check(operation, arguments)
        token = COUNT_ONLY.set(True)
        try:
            answer = await self.execute(
                _context(services, tenant_id, subject), operation, checked, {"dryRun": True}
            )
        finally:
            COUNT_ONLY.reset(token)
        matched = answer.get("matched")
        if not isinstance(matched, int):
            raise InputError(
                f"{operation} answered no count.", code="INVALID_ARGUMENTS", field=ARGUMENTS
            )
        return matched

    async def queue(
        self, services: Services, schedule: Schedule, *, idempotency_key: str
    ) -> JobState:
        """Queue the schedule's mutation as a job under `idempotency_key`."""
        answer = await self.execute(
            _context(services, schedule.tenant_id, schedule.created_by),
            schedule.operation,
            schedule.arguments,
            {"mode": "BACKGROUND", "dryRun": False, "idempotencyKey": idempotency_key},
        )
        job_id = (answer.get("job") or {}).get("id")
        job = (
            await job_reads.get_job(services.pool, schedule.tenant_id, job_id)
            if job_id is not None
            else None
        )
        if job is None:
            raise InputError(
                f"{schedule.operation} queued no job.", code="NOT_QUEUED", field=ARGUMENTS
            )
        return job

    async def execute(
        self,
        context: Context,
        operation: str,
        arguments: dict[str, Any],
        options: dict[str, Any],
        *,
        field: Sequence[str] = ARGUMENTS,
    ) -> dict[str, Any]:
        """The mutation's answer to `arguments` with `options` set over theirs, run with
        `context`; a Rejected one raised as InputError with its field inside `arguments`
        (at `field`)."""
        args = self.arguments_of(operation)
        variables = {name: value for name, value in arguments.items() if name in args}
        if "options" in args:
            variables["options"] = {**(arguments.get("options") or {}), **options}
        declared = ", ".join(f"${name}: {args[name].type}" for name in variables)
        passed = ", ".join(f"{name}: ${name}" for name in variables)
        document = (
            f"mutation Scheduled({declared}) {{ answer: {operation}({passed}) {{ __typename "
            "... on JobQueued { job { id } } ... on Rejected { code message field } "
            "... on BulkSummary { matched } } }"
        )
        result = await self.schema.execute(
            document,
            variable_values=variables,
            context_value=context,
        )
        if result.errors:
            raise InputError(result.errors[0].message, code="INVALID_ARGUMENTS", field=list(field))
        answer: dict[str, Any] = result.data["answer"]
        if answer["__typename"] == "Rejected":
            raise InputError(
                answer["message"],
                code=answer["code"],
                field=[*field, *(answer["field"] or [])],
            )
        return answer


def _coerce(value: Any, type_: GraphQLInputType, field: list[str]) -> None:
    """InputError at the first place `value` does not fit `type_`."""

    errors: list[tuple[GraphQLError, Sequence[str | int]]] = []
    validate_input_value(value, type_, lambda error, path: errors.append((error, path)))
    if errors:
        error, path = errors[0]
        raise InputError(
            error.message, code="INVALID_INPUT", field=[*field, *(str(p) for p in path)]
        )
