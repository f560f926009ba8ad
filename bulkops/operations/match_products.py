"""matchProducts: find the catalog product each input row names.

Its items are input rows, staged (inline rows too) in `match_rows` when the request is
accepted and walked by row number. A batch resolves its rows rule by rule, in priority
order, each rule one set-based query over the rows still unmatched; every row's outcome
goes to `match_results` in the batch's transaction, with the products optionally added
to a dataset."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel, field_validator
from pydantic_core import PydanticCustomError

from bulkops.db import match_inputs
from bulkops.db import matching as matching_db
from bulkops.db.datasets import dataset_exists
from bulkops.db.match_inputs import StagedRow
from bulkops.db.matching import CODE_KINDS, BatchRow, Hit, RowOutcome
from bulkops.errors import NotFoundError
from bulkops.models import ItemFailure
from bulkops.operations.base import (
    BatchContext,
    BatchOutcome,
    Counter,
    JobAborted,
    Operation,
    Retry,
    Thresholds,
)
from bulkops.selection import Selection

DEFAULT_THRESHOLD = 0.6
# Candidates shown for an unmatched row are at least this similar (pg_trgm's own default).
CANDIDATE_FLOOR = 0.3
CANDIDATES = 3
MAX_VALUE_LENGTH = 1000
MATCHED_BY = ("BARCODE", "IDENTIFIER", "SKU", "NAME_BRAND", "FUZZY_NAME")
# The columns an input row is read from; others are kept for the download only.
MATCH_FIELDS = ("barcode", "sku", "name", "brand", "identifiers")


class MatchParams(BaseModel):
    input_id: str
    fuzzy_threshold: float = DEFAULT_THRESHOLD
    add_to_dataset_id: int | None = None

    @field_validator("fuzzy_threshold")
    @classmethod
    def _threshold(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise PydanticCustomError(
                "INVALID_THRESHOLD", "fuzzyThreshold is a similarity above 0 and at most 1."
            )
        return value


@dataclass(frozen=True)
class Rule:
    """One matching rule: its name, which rows it can apply to, and its batch query."""

    name: str
    applies: Callable[[BatchRow], bool]
    find: Callable[[asyncpg.Connection, MatchParams, list[int]], Awaitable[list[Hit]]]


async def _fuzzy(conn: asyncpg.Connection, params: MatchParams, rows: list[int]) -> list[Hit]:
    return await matching_db.match_fuzzy(
        conn, params.input_id, rows, threshold=params.fuzzy_threshold
    )


def _plain(
    query: Callable[[asyncpg.Connection, str, Sequence[int]], Awaitable[list[Hit]]],
) -> Callable[[asyncpg.Connection, MatchParams, list[int]], Awaitable[list[Hit]]]:
    async def find(conn: asyncpg.Connection, params: MatchParams, rows: list[int]) -> list[Hit]:
        return await query(conn, params.input_id, rows)

    return find


# Highest priority first: a row goes to the first rule that finds it a product.
RULES = (
    Rule("BARCODE", lambda r: r.has_codes, _plain(matching_db.match_codes)),
    Rule("IDENTIFIER", lambda r: r.has_identifiers, _plain(matching_db.match_identifiers)),
    Rule("SKU", lambda r: r.has_sku, _plain(matching_db.match_skus)),
    Rule("NAME_BRAND", lambda r: r.has_name, _plain(matching_db.match_names)),
    Rule("FUZZY_NAME", lambda r: r.has_name and r.has_brand, _fuzzy),
)
COUNTER_OF_RULE = {
    "BARCODE": "matchedByBarcode",
    "IDENTIFIER": "matchedByIdentifier",
    "SKU": "matchedBySku",
    "NAME_BRAND": "matchedByNameBrand",
    "FUZZY_NAME": "matchedByFuzzyName",
}


class MatchProducts(Operation[MatchParams]):
    name = "matchProducts"
    description = (
        "Match input rows (inline or an uploaded CSV/JSONL file) to catalog products by "
        "barcode, identifier, SKU, name and brand, or a similar name; unmatched rows are "
        "skipped, with candidates."
    )
    # The `rows` argument holds at most inline_limit rows; larger inputs are uploads. A
    # batch stays well inside a job's lease (BULKOPS_LEASE_SECONDS) even when most of its
    # rows need the fuzzy rule, the costly one (milliseconds a row on a large catalog).
    thresholds = Thresholds(inline_threshold=1000, inline_limit=1000, batch_size=500)
    params_model = MatchParams
    counters = (
        Counter("matchedRows"),
        Counter("unmatchedRows"),
        Counter(
            "addedToDataset",
            "Matched products added to addToDatasetId (those already in it are not counted).",
        ),
    )
    summary_description = (
        "Items are input rows: matched counts rows, succeeded the matched ones, skipped the "
        "unmatched ones and failed those with nothing to match on; sample shows matched "
        "products."
    )
    summary_extras = ("rows",)
    # A child matches the same rows again, staged anew so that its results are its own.
    retry = Retry.STAGED_INPUT

    def bind(self, raw: dict[str, Any], selection: Selection) -> dict[str, Any]:
        """The results are stored under the staged input the run walks."""
        assert selection.staged is not None
        return {**raw, "input_id": selection.staged.upload_id}

    async def check(self, conn: asyncpg.Connection, params: MatchParams) -> None:
        dataset_id = params.add_to_dataset_id
        if dataset_id is not None and not await dataset_exists(conn, dataset_id):
            raise NotFoundError(f"Dataset {dataset_id} does not exist.", field=["addToDatasetId"])

    # The items are the row numbers of the rows staged (`selection.staged`) when the
    # request was accepted; their results stay with them after the job, for the download.

    async def count(self, conn: asyncpg.Connection, selection: Selection) -> int:
        assert selection.staged is not None
        return await match_inputs.input_size(conn, selection.staged.upload_id)

    async def filter_batch(
        self, conn: asyncpg.Connection, selection: Selection, *, after: int, limit: int
    ) -> list[int]:
        assert selection.staged is not None
        return await match_inputs.next_rows(
            conn, selection.staged.upload_id, after=after, limit=limit
        )

    async def apply_batch(
        self, ctx: BatchContext, params: MatchParams, ids: list[int]
    ) -> BatchOutcome:
        conn = ctx.conn
        dataset_id = params.add_to_dataset_id
        if dataset_id is not None and not await dataset_exists(conn, dataset_id, lock=True):
            raise JobAborted(f"Dataset {dataset_id} was deleted.", code="DATASET_NOT_FOUND")
        batch = await matching_db.batch_rows(conn, params.input_id, ids)
        staged = {b.row for b in batch}
        errors = [
            ItemFailure("NOT_FOUND", "The staged row no longer exists.", row=row)
            for row in ids
            if row not in staged
        ]
        errors += [
            ItemFailure(b.error_code, b.error_message or b.error_code, row=b.row)
            for b in batch
            if b.error_code is not None
        ]
        valid = [b for b in batch if b.error_code is None]
        hits: dict[int, tuple[str, Hit]] = {}
        for rule in RULES:
            todo = [b.row for b in valid if b.row not in hits and rule.applies(b)]
            if todo:
                for hit in await rule.find(conn, params, todo):
                    hits[hit.row] = (rule.name, hit)
        unmatched = [b for b in valid if b.row not in hits]
        named = [b.row for b in unmatched if b.has_name]
        candidates = (
            await matching_db.find_candidates(
                conn,
                params.input_id,
                named,
                floor=min(CANDIDATE_FLOOR, params.fuzzy_threshold),
                limit=CANDIDATES,
            )
            if named
            else {}
        )
        outcomes = [_outcome(b, hits, candidates) for b in batch]
        await matching_db.write_results(conn, params.input_id, outcomes)
        matched_ids = [o.product_id for o in outcomes if o.product_id is not None]
        added = 0
        if dataset_id is not None:
            added = await matching_db.add_to_dataset(conn, dataset_id, matched_ids)
        counters = {
            "matchedRows": len(hits),
            "unmatchedRows": len(unmatched),
            "addedToDataset": added,
        }
        for rule_name, _ in hits.values():
            key = COUNTER_OF_RULE[rule_name]
            counters[key] = counters.get(key, 0) + 1
        return BatchOutcome(
            succeeded=len(hits),
            failed=len(errors),
            skipped=len(unmatched),
            errors=sorted(errors, key=lambda e: e.row or 0),
            counters=counters,
            changed_ids=list(dict.fromkeys(matched_ids)),
        )


def _outcome(
    row: BatchRow, hits: dict[int, tuple[str, Hit]], candidates: dict[int, list[tuple[int, float]]]
) -> RowOutcome:
    if row.error_code is not None:
        return RowOutcome(row.row, "INVALID")
    if row.row in hits:
        rule, hit = hits[row.row]
        return RowOutcome(row.row, "MATCHED", hit.product_id, rule, hit.score)
    return RowOutcome(row.row, "UNMATCHED", candidates=tuple(candidates.get(row.row, ())))


def _text(value: Any) -> str | None:
    """A match field as text: trimmed, None when blank or missing."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    return text or None


def _identifier_pairs(value: Any) -> list[tuple[str, str]] | None:
    """Identifiers as (KIND, value) pairs from a list of {kind, value}, an object
    kind -> value, or that JSON as text (the export's column); None when unreadable."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    items: list[tuple[Any, Any]]
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
        items = [(v.get("kind"), v.get("value")) for v in value]
    else:
        return None
    pairs = []
    for kind, val in items:
        k, v = _text(kind), _text(val)
        if k and v:
            pairs.append((k.upper(), v))
    return pairs


def stage_row(
    row: int,
    values: Mapping[str, Any],
    fields: dict[str, Any],
    *,
    extra_identifiers: Sequence[tuple[str, str | None]] = (),
) -> StagedRow:
    """The staged form of one input row: normalized match fields, or an error when the
    row cannot be matched on anything. `values` holds the match fields (MATCH_FIELDS),
    `extra_identifiers` more (kind, value) pairs (an upload's identifier:KIND columns),
    `fields` the row as given (kept for the download)."""
    barcode, sku = _text(values.get("barcode")), _text(values.get("sku"))
    name, brand = _text(values.get("name")), _text(values.get("brand"))
    pairs = _identifier_pairs(values.get("identifiers"))
    if pairs is not None:
        for kind, value in extra_identifiers:
            k, v = _text(kind), _text(value)
            if k and v:
                pairs.append((k.upper(), v))

    def invalid(code: str, message: str) -> StagedRow:
        return StagedRow(row, (), (), None, None, None, fields, code, message)

    if pairs is None:
        return invalid(
            "INVALID_IDENTIFIERS",
            f"Row {row}: identifiers must be a list of {{kind, value}} or an object kind -> value.",
        )
    too_long = [
        f
        for f, v in (("barcode", barcode), ("sku", sku), ("name", name), ("brand", brand))
        if v is not None and len(v) > MAX_VALUE_LENGTH
    ]
    if too_long or any(len(k) > 64 or len(v) > 255 for k, v in pairs):
        what = too_long[0] if too_long else "identifiers"
        return invalid("VALUE_TOO_LONG", f"Row {row}: {what} is too long.")
    codes = [barcode] if barcode else []
    codes += [v for k, v in pairs if k in (*CODE_KINDS, "BARCODE")]
    others = tuple((k, v) for k, v in pairs if k not in (*CODE_KINDS, "BARCODE"))
    if not (codes or others or sku or name):
        return invalid(
            "NOTHING_TO_MATCH",
            f"Row {row} has no barcode, identifier, SKU or name to match on.",
        )
    return StagedRow(row, tuple(dict.fromkeys(codes)), others, sku, name, brand, fields, None, None)
