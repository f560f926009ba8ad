"""A chain's steps (`options.then`), checked when the chain is submitted: each step's
mutation runs through its own resolver, as a schedule's does (`bulkops.graphql.scheduled`),
with `bulkops.services.chains.CAPTURE` set, so the request is checked whole (argument
types, parameters, what they name, its own selection) and handed back instead of run.
What comes back is stored on the job as the step (`ChainStep`), and made into the step's
job when the step before it ends.

A step whose selection comes from the step before (`selectionFrom`) is given a stand-in
selection to pass the resolver; the stand-in is neither counted nor kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graphql import GraphQLArgument, get_named_type

from bulkops.domain import ChainSelection
from bulkops.errors import InputError
from bulkops.graphql.inputs import ChainStepInput
from bulkops.graphql.scheduled import Keeper, SchemaRunner
from bulkops.graphql.types.common import Info
from bulkops.operations.base import Operation
from bulkops.services.chains import CAPTURE, MAX_STEPS, Capture, ChainStep, selection_json

# A chain sets these options of each step itself.
CHAIN = Keeper(
    "chain",
    ("mode", "dryRun", "idempotencyKey", "then"),
    option_code="OPTION_SET_BY_CHAIN",
    upload_code="UPLOAD_NOT_CHAINABLE",
)
MATCH = "matchProducts"


def selection_argument(args: dict[str, GraphQLArgument]) -> str | None:
    """The argument a step's selection of products goes in: its ProductSelection, or, for
    a mutation that selects by filter alone (exportProducts), its ProductFilter."""
    for wanted in ("ProductSelection", "ProductFilter"):
        for name, arg in args.items():
            if get_named_type(arg.type).name == wanted:
                return name
    return None


async def resolve_chain(
    info: Info, operation: str, steps: Sequence[ChainStepInput]
) -> tuple[ChainStep, ...]:
    """The steps of `options.then` after a request of `operation`, each checked through
    its mutation; InputError naming the field inside options.then for the first one
    refused (nothing is stored then)."""
    if len(steps) > MAX_STEPS:
        raise InputError(
            f"A chain has at most {MAX_STEPS} steps after the first.",
            code="TOO_MANY_STEPS",
            field=["options", "then"],
        )
    runner = SchemaRunner(info.schema)
    resolved: list[ChainStep] = []
    before = operation
    for index, step in enumerate(steps):
        resolved.append(await _resolve_step(info, runner, before, step, index))
        before = step.operation
    return tuple(resolved)


async def _resolve_step(
    info: Info, runner: SchemaRunner, before: str, step: ChainStepInput, index: int
) -> ChainStep:
    at = ["options", "then", str(index)]
    operations = info.context.services.operations
    if step.operation not in operations:
        raise InputError(
            f"There is no bulk mutation {step.operation!r}; Query.operations lists them.",
            code="UNKNOWN_OPERATION",
            field=[*at, "operation"],
        )
    arguments: Any = step.arguments
    given = _with_stand_in(runner, operations[before], step, arguments, at)
    checked = runner.check(
        step.operation,
        given,
        field=[*at, "arguments"],
        operation_field=[*at, "operation"],
        keeper=CHAIN,
    )
    capture = Capture(check_selection=step.selection_from is None)
    token = CAPTURE.set(capture)
    try:
        await runner.execute(info.context, step.operation, checked, {}, field=[*at, "arguments"])
    finally:
        CAPTURE.reset(token)
    if capture.operation is None or capture.selection is None:
        raise InputError(
            f"{step.operation} cannot be a step of a chain.",
            code="NOT_CHAINABLE",
            field=[*at, "operation"],
        )
    return ChainStep(
        operation=capture.operation,
        arguments=arguments,
        params=capture.params,
        selection=None if step.selection_from else selection_json(capture.selection),
        selection_from=step.selection_from,
        run_on=step.run_on,
        priority=capture.priority,
        error_policy=capture.error_policy,
    )


def _with_stand_in(
    runner: SchemaRunner,
    before: Operation[Any],
    step: ChainStepInput,
    arguments: Any,
    at: list[str],
) -> Any:
    """The step's arguments, with a stand-in selection when the step before gives it."""
    source = step.selection_from
    if source is None or not isinstance(arguments, dict):
        return arguments
    name = selection_argument(runner.arguments_of(step.operation, [*at, "operation"]))
    if name is None:
        raise InputError(
            f"{step.operation} does not select products, so its selection cannot come from "
            "the step before; leave selectionFrom out.",
            code="INVALID_CHAIN_SELECTION",
            field=[*at, "selectionFrom"],
        )
    if name in arguments:
        raise InputError(
            f"Give either selectionFrom or arguments.{name}, not both.",
            code="INVALID_CHAIN_SELECTION",
            field=[*at, "arguments", name],
        )
    if source == ChainSelection.MATCHED and before.name != MATCH:
        raise InputError(
            f"MATCHED takes the products a {MATCH} step matched; the step before is {before.name}.",
            code="INVALID_CHAIN_SELECTION",
            field=[*at, "selectionFrom"],
        )
    if not before.changed_products:
        raise InputError(
            f"The items of {before.name} are not products, so no selection comes from them.",
            code="INVALID_CHAIN_SELECTION",
            field=[*at, "selectionFrom"],
        )
    return {**arguments, name: {"filter": {}} if name == "selection" else {}}
