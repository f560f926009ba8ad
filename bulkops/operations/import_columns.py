"""importProducts' columns: how the rows of an uploaded file become staged rows."""

from __future__ import annotations

from collections.abc import Sequence
from json.encoder import encode_basestring_ascii as _quoted

from bulkops.db.imports import StagedRecord
from bulkops.uploads import Row, RowError, UnreadableJSONError, UploadError, load_json

FIELDS = (
    "sku",
    "name",
    "barcode",
    "brand",
    "category",
    "description",
    "status",
    "price",
    "attributes",
)
IDENTIFIER_PREFIX = "identifier:"
IDENTIFIERS = "identifiers"
# The export's read-only columns, so that an export can be imported back as it is.
IGNORED = frozenset({"id", "created_at", "updated_at"})

_ATTRIBUTES = FIELDS.index("attributes")

_FIELD, _IDENTIFIER, _OBJECT, _IGNORED = range(4)
# What a column is: one of the above, and the field's index or the identifier's kind.
_Target = tuple[int, int | str | None]


class ImportColumns:
    """How a file's columns (any case) become a staged row: the product fields,
    `identifier:<KIND>` columns, an `identifiers` column (a JSON object kind -> value, as
    the export writes it), and the export's read-only columns, which are ignored. Another
    column refuses the whole file (UNKNOWN_COLUMN): a misspelt one would otherwise be
    dropped without a word."""

    def __init__(self) -> None:
        self._targets: dict[str, _Target] = {}
        # For a CSV, whose columns are known: each field's column (or None), and the
        # identifier columns with what they hold.
        self._fields: list[str | None] | None = None
        self._identifiers: list[tuple[str, _Target]] = []

    @classmethod
    def of_header(cls, columns: Sequence[str]) -> ImportColumns:
        """The columns of a CSV header; raises UploadError (INVALID_HEADER: no sku column,
        one column twice, a bad identifier column; UNKNOWN_COLUMN)."""
        if "sku" not in (c.strip().lower() for c in columns):
            hint = ""
            if any(";" in c or "\t" in c for c in columns):
                hint = " Columns are separated by commas."
            raise UploadError(
                "The header has no sku column: the first line names the columns, sku "
                "(required), name, barcode, brand, category, description, status, price, "
                "attributes, "
                f"identifier:<KIND>.{hint}",
                code="INVALID_HEADER",
            )
        mapper = cls()
        seen: dict[_Target, str] = {}
        for column in columns:
            target = mapper._target(column, where="The header", code="INVALID_HEADER")
            if target in seen and target[0] != _IGNORED:
                raise UploadError(
                    f"The header has the column {column!r} and {seen[target]!r}: they are "
                    "the same column.",
                    code="INVALID_HEADER",
                )
            seen[target] = column
        fields: list[str | None] = [None] * len(FIELDS)
        for column, (what, arg) in mapper._targets.items():
            if what == _FIELD:
                fields[arg] = column  # type: ignore[index]
            elif what in (_IDENTIFIER, _OBJECT):
                mapper._identifiers.append((column, (what, arg)))
        mapper._fields = fields
        return mapper

    def _target(self, column: str, *, where: str, code: str) -> _Target:
        target = self._targets.get(column)
        if target is not None:
            return target
        name = column.strip().lower()
        if name in FIELDS:
            target = (_FIELD, FIELDS.index(name))
        elif name == IDENTIFIERS:
            target = (_OBJECT, None)
        elif name.startswith(IDENTIFIER_PREFIX):
            kind = name.removeprefix(IDENTIFIER_PREFIX).strip().upper()
            if not kind or kind == "BARCODE":
                raise UploadError(
                    f"{where} has the column {column!r}: identifier columns are "
                    "identifier:<KIND>, e.g. identifier:GTIN (the barcode has its own "
                    "column, barcode).",
                    code=code,
                )
            target = (_IDENTIFIER, kind)
        elif name in IGNORED:
            target = (_IGNORED, None)
        else:
            raise UploadError(
                f"{where} has the column {column!r}, which is not one of sku, name, "
                "barcode, brand, category, description, status, price, attributes, "
                "identifiers, "
                "identifier:<KIND> (or the export's id, created_at, updated_at).",
                code="UNKNOWN_COLUMN",
            )
        self._targets[column] = target
        return target

    def record(self, item: Row | RowError) -> StagedRecord:
        """The staged form of a row (see db/imports.py STAGED_COLUMNS); raises UploadError
        for a JSONL key that is not a column."""
        if isinstance(item, RowError):
            message = f"{item.column} {item.reason}." if item.column else f"The row {item.reason}."
            return (item.row, *[None] * (len(FIELDS) + 1), item.code, item.column, message)
        number, values = item
        if self._fields is not None:
            fields = [values[c] if c is not None else None for c in self._fields]
            given = [(c, t, v) for c, t in self._identifiers if (v := values[c])]
        else:
            fields, given = self._spread(number, values)
        attributes = fields[_ATTRIBUTES]
        # PostgreSQL stores a number of any size, and writes it back in full: attributes
        # with one Python cannot read back would leave a product that cannot be read.
        if attributes is not None and attributes.strip():
            try:
                load_json(attributes)
            except UnreadableJSONError as exc:
                message = f"attributes {exc.reason}."
                return (number, *fields, None, "INVALID_ATTRIBUTES", "attributes", message)
        if not given:
            return (number, *fields, None, None, None, None)
        identifiers = _Identifiers()
        for column, (what, kind), value in given:
            if what == _IDENTIFIER:
                identifiers.add(str(kind), value, column)
            else:
                identifiers.add_object(value, column)
        if identifiers.error is not None:
            return (number, *fields, None, *identifiers.error)
        staged = _json_triples(identifiers.triples) if identifiers.triples else None
        return (number, *fields, staged, None, None, None)

    def _spread(
        self, number: int, values: dict[str, str | None]
    ) -> tuple[list[str | None], list[tuple[str, _Target, str]]]:
        """A row whose keys are its own (JSONL): its fields, and its identifier values."""
        fields: list[str | None] = [None] * len(FIELDS)
        given: list[tuple[str, _Target, str]] = []
        targets = self._targets
        for column, value in values.items():
            target = targets.get(column) or self._target(
                column, where=f"Row {number}", code="UNKNOWN_COLUMN"
            )
            if target[0] == _FIELD:
                fields[target[1]] = value  # type: ignore[index]
            elif value is not None and target[0] != _IGNORED:
                given.append((column, target, value))
        return fields, given


def _json_triples(triples: list[list[str]]) -> str:
    """`json.dumps(triples)` for a list of lists of text, the same text made without the
    encoder's machinery (which costs several times as much, once a staged row)."""
    return "[" + ", ".join("[" + ", ".join(map(_quoted, t)) + "]" for t in triples) + "]"


class _Identifiers:
    """A row's identifiers as [KIND, value, column], or the first error among them."""

    def __init__(self) -> None:
        self.triples: list[list[str]] = []
        self.error: tuple[str, str, str] | None = None

    def add(self, kind: str, value: str, column: str) -> None:
        value = value.strip()
        if not value or self.error is not None:
            return
        for known, given, _ in self.triples:
            if known == kind:
                if given != value:
                    self.fail(
                        "DUPLICATE_IDENTIFIER_KIND",
                        column,
                        f"{kind} is given twice, with two values; a product has one of each.",
                    )
                return
        self.triples.append([kind, value, column])

    def add_object(self, text: str, column: str) -> None:
        """The pairs of an identifiers value: a JSON object kind -> text (or null)."""
        if not text.strip():
            return
        try:
            obj = load_json(text)
        except UnreadableJSONError:
            self.fail("INVALID_IDENTIFIER", column, "The identifiers are not valid JSON.")
            return
        if not isinstance(obj, dict):
            self.fail(
                "INVALID_IDENTIFIER",
                column,
                "The identifiers must be a JSON object of kinds and values.",
            )
            return
        for kind, value in obj.items():
            if isinstance(value, str):
                self.add(kind.strip().upper(), value, column)
            elif value is not None:
                self.fail(
                    "INVALID_IDENTIFIER",
                    column,
                    f"The {kind} value must be text (as a number it would lose leading zeros).",
                )

    def fail(self, code: str, column: str, message: str) -> None:
        if self.error is None:
            self.error = (code, column, message)
