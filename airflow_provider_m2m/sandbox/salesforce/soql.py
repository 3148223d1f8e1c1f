"""A SOQL subset: parse a query and run it against the store.

Supported: `SELECT` a field list or `COUNT()`, `FROM` one object, `WHERE` with `=`, `!=`, `<>`,
`<`, `<=`, `>`, `>=`, `LIKE`, `IN`, `NOT IN`, `AND`, `OR`, `NOT`, parentheses and `null`,
`ORDER BY` fields with `ASC`/`DESC` and `NULLS FIRST`/`NULLS LAST`, `LIMIT` and `OFFSET`.
Relationship fields, aggregate functions other than `COUNT()`, `GROUP BY` and date literals such
as `TODAY` are not supported. They raise SoqlError with `MALFORMED_QUERY` or `INVALID_FIELD`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from airflow_provider_m2m.sandbox.salesforce import objects, values
from airflow_provider_m2m.sandbox.salesforce.ids import to_18
from airflow_provider_m2m.sandbox.salesforce.objects import FieldDef, ObjectDef
from airflow_provider_m2m.sandbox.salesforce.store import Record, Store


class SoqlError(Exception):
    """A query the API rejects: `error_code` is MALFORMED_QUERY, INVALID_FIELD or INVALID_TYPE."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))
      | (?P<date>\d{4}-\d{2}-\d{2})
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\", "%": "\\%", "_": "\\_"}


@dataclass
class Token:
    kind: str
    text: str
    value: Any = None


def _unescape(quoted: str) -> str:
    body = quoted[1:-1]
    return re.sub(r"\\(.)", lambda match: _ESCAPES.get(match[1], match[1]), body)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[position:].split()[0]}'")
        kind = match.lastgroup or ""
        raw = match[kind]
        value: Any = raw
        if kind == "string":
            value = _unescape(raw)
        tokens.append(Token(kind, raw, value))
        position = match.end()
    return tokens


# -- query model ----------------------------------------------------------------------------------


@dataclass
class Comparison:
    field_def: FieldDef
    operator: str  # one of = != < <= > >= LIKE IN NOT IN
    operand: Any  # a stored-type value, a list of them for IN, or a compiled regex for LIKE


@dataclass
class BoolOp:
    operator: str  # AND, OR, NOT
    operands: list[Any]


@dataclass
class OrderItem:
    field_def: FieldDef
    descending: bool
    nulls_last: bool


@dataclass
class Query:
    object_def: ObjectDef
    fields: list[FieldDef]
    is_count: bool = False
    where: Any = None
    order_by: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0


# -- parser ---------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, store: Store) -> None:
        self.tokens = tokenize(text)
        self.position = 0
        self.store = store
        self.object_def: ObjectDef | None = None

    def peek(self, offset: int = 0) -> Token | None:
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text.upper() in words

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
        self.position += 1
        return token

    def expect_word(self, word: str) -> None:
        token = self.take()
        if token.kind != "word" or token.text.upper() != word:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}', expected {word}")

    def expect_punct(self, punct: str) -> None:
        token = self.take()
        if token.text != punct:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}', expected '{punct}'")

    def parse(self) -> Query:
        self.expect_word("SELECT")

        select_start = self.position
        while not self.at_word("FROM"):
            if self.peek() is None:
                raise SoqlError("MALFORMED_QUERY", "unexpected end of query, expected FROM")
            self.position += 1
        select_tokens = self.tokens[select_start : self.position]
        self.expect_word("FROM")

        object_token = self.take()
        object_def = self.store.object_def(object_token.text) if object_token.kind == "word" else None
        if object_def is None:
            raise SoqlError(
                "INVALID_TYPE",
                f"sObject type '{object_token.text}' is not supported. If you are attempting to use a custom object, "
                "be sure to append the '__c' after the entity name.",
            )
        self.object_def = object_def
        query = Query(object_def=object_def, fields=[])
        self._parse_select(select_tokens, query)

        if self.at_word("WHERE"):
            self.take()
            query.where = self._parse_or()
        if self.at_word("ORDER"):
            self.take()
            self.expect_word("BY")
            query.order_by = self._parse_order_by()
        if self.at_word("LIMIT"):
            self.take()
            query.limit = self._parse_count("LIMIT")
        if self.at_word("OFFSET"):
            self.take()
            query.offset = self._parse_count("OFFSET")
        if self.peek() is not None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{self.peek().text}'")  # type: ignore[union-attr]
        return query

    def _parse_count(self, clause: str) -> int:
        token = self.take()
        if token.kind != "number" or not token.text.isdigit():
            raise SoqlError("MALFORMED_QUERY", f"{clause} must be a non-negative integer, found '{token.text}'")
        return int(token.text)

    def _field(self, name: str) -> FieldDef:
        assert self.object_def is not None
        field_def = self.object_def.field(name)
        if field_def is None:
            raise SoqlError(
                "INVALID_FIELD",
                f"No such column '{name}' on entity '{self.object_def.name}'. If you are attempting to use a custom "
                "field, be sure to append the '__c' after the custom field name.",
            )
        return field_def

    def _parse_select(self, select_tokens: list[Token], query: Query) -> None:
        texts = [token.text.upper() for token in select_tokens]
        if texts == ["COUNT", "(", ")"]:
            query.is_count = True
            return
        if not select_tokens:
            raise SoqlError("MALFORMED_QUERY", "unexpected token: 'FROM', expected a field list")
        expect_field = True
        for token in select_tokens:
            if expect_field and token.kind == "word":
                field_def = self._field(token.text)
                if field_def in query.fields:
                    raise SoqlError("MALFORMED_QUERY", f"duplicate field selected: {field_def.name}")
                query.fields.append(field_def)
            elif not expect_field and token.text == ",":
                pass
            else:
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}' in the field list")
            expect_field = not expect_field
        if expect_field:
            raise SoqlError("MALFORMED_QUERY", "the field list ends with a comma")

    def _parse_or(self) -> Any:
        operands = [self._parse_and()]
        while self.at_word("OR"):
            self.take()
            operands.append(self._parse_and())
        return operands[0] if len(operands) == 1 else BoolOp("OR", operands)

    def _parse_and(self) -> Any:
        operands = [self._parse_not()]
        while self.at_word("AND"):
            self.take()
            operands.append(self._parse_not())
        return operands[0] if len(operands) == 1 else BoolOp("AND", operands)

    def _parse_not(self) -> Any:
        if self.at_word("NOT"):
            self.take()
            return BoolOp("NOT", [self._parse_not()])
        token = self.peek()
        if token is not None and token.text == "(":
            self.take()
            inner = self._parse_or()
            self.expect_punct(")")
            return inner
        return self._parse_comparison()

    def _parse_comparison(self) -> Comparison:
        field_token = self.take()
        if field_token.kind != "word":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{field_token.text}', expected a field name")
        field_def = self._field(field_token.text)
        if not field_def.filterable:
            raise SoqlError(
                "INVALID_FIELD",
                f"field '{field_def.name}' can not be filtered in a query call",
            )
        if self.at_word("NOT") and (self.peek(1) and self.peek(1).text.upper() == "IN"):  # type: ignore[union-attr]
            self.take()
            self.take()
            return Comparison(field_def, "NOT IN", self._parse_value_list(field_def))
        if self.at_word("IN"):
            self.take()
            return Comparison(field_def, "IN", self._parse_value_list(field_def))
        if self.at_word("LIKE"):
            self.take()
            pattern = self.take()
            if pattern.kind != "string":
                raise SoqlError("MALFORMED_QUERY", "LIKE needs a quoted string pattern")
            return Comparison(field_def, "LIKE", _like_regex(pattern.value))

        operator_token = self.take()
        if operator_token.kind != "op":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{operator_token.text}', expected an operator")
        operator = "!=" if operator_token.text == "<>" else operator_token.text
        value = self._parse_literal(field_def)
        if value is None and operator not in ("=", "!="):
            raise SoqlError("MALFORMED_QUERY", f"null can only be compared with = or !=, found {operator}")
        return Comparison(field_def, operator, value)

    def _parse_value_list(self, field_def: FieldDef) -> list[Any]:
        self.expect_punct("(")
        items = [self._parse_literal(field_def)]
        while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
            self.take()
            items.append(self._parse_literal(field_def))
        self.expect_punct(")")
        return items

    def _parse_literal(self, field_def: FieldDef) -> Any:
        token = self.take()
        if token.kind == "word" and token.text.upper() == "NULL":
            return None
        try:
            if field_def.type in objects.NUMBER_TYPES and token.kind == "number":
                return Decimal(token.text)
            if field_def.type == objects.BOOLEAN and token.kind == "word" and token.text.upper() in ("TRUE", "FALSE"):
                return token.text.upper() == "TRUE"
            if field_def.type == objects.DATE and token.kind == "date":
                return dt.date.fromisoformat(token.text)
            if field_def.type == objects.DATETIME and token.kind == "datetime":
                return values.read_value(field_def, token.text)
            if field_def.type in objects.TEXT_TYPES and token.kind == "string":
                if field_def.type in (objects.ID, objects.REFERENCE) and len(token.value) == 15:
                    return to_18(token.value)
                return token.value
        except (ValueError, values.ValueTypeError) as err:
            raise SoqlError("MALFORMED_QUERY", f"invalid value '{token.text}' for field {field_def.name}") from err
        message = f"value of filter criterion for field '{field_def.name}' must be of type {field_def.type}"
        if token.kind == "string":
            message += " and should not be enclosed in quotes"
        else:
            message += f", found {token.text}"
        raise SoqlError("INVALID_FIELD", message)

    def _parse_order_by(self) -> list[OrderItem]:
        items = []
        while True:
            token = self.take()
            if token.kind != "word":
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}' in ORDER BY")
            field_def = self._field(token.text)
            descending = False
            if self.at_word("ASC", "DESC"):
                descending = self.take().text.upper() == "DESC"
            # SOQL puts nulls first in ascending order and last in descending order by default.
            nulls_last = descending
            if self.at_word("NULLS"):
                self.take()
                if not self.at_word("FIRST", "LAST"):
                    raise SoqlError("MALFORMED_QUERY", "NULLS must be followed by FIRST or LAST")
                nulls_last = self.take().text.upper() == "LAST"
            items.append(OrderItem(field_def, descending, nulls_last))
            if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                self.take()
                continue
            return items


def _like_regex(pattern: str) -> re.Pattern[str]:
    """Translate a LIKE pattern (`%` any run, `_` one character, backslash escapes) to a regex."""
    parts = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            parts.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
        index += 1
    return re.compile("^" + "".join(parts) + "$", re.IGNORECASE | re.DOTALL)


def parse(text: str, store: Store) -> Query:
    """Parse a SOQL query against the store's object definitions; raise SoqlError when invalid."""
    return _Parser(text, store).parse()


# -- evaluation -----------------------------------------------------------------------------------


def _comparable(value: Any) -> Any:
    # SOQL compares text case-insensitively.
    return value.lower() if isinstance(value, str) else value


def _matches(condition: Any, record: Record) -> bool:
    if isinstance(condition, BoolOp):
        if condition.operator == "AND":
            return all(_matches(operand, record) for operand in condition.operands)
        if condition.operator == "OR":
            return any(_matches(operand, record) for operand in condition.operands)
        return not _matches(condition.operands[0], record)
    value = record.get(condition.field_def.name)
    operator, operand = condition.operator, condition.operand
    if operator == "LIKE":
        return value is not None and bool(operand.match(str(value)))
    if operator in ("IN", "NOT IN"):
        found = _comparable(value) in [_comparable(item) for item in operand]
        return found if operator == "IN" else not found
    if operand is None or value is None:
        both_null = operand is None and value is None
        if operator == "=":
            return both_null
        if operator == "!=":
            return not both_null
        # A range comparison with null is never true.
        return False
    left, right = _comparable(value), _comparable(operand)
    return {
        "=": left == right,
        "!=": left != right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[operator]


class _SortKey:
    """Order one field's values with SOQL's null placement and case-insensitive text order."""

    def __init__(self, value: Any, item: OrderItem) -> None:
        self.value = _comparable(value)
        self.item = item

    def __lt__(self, other: _SortKey) -> bool:
        if self.value is None or other.value is None:
            if self.value is None and other.value is None:
                return False
            # With a descending sort the comparison is inverted afterwards, so null placement is
            # expressed here in the sort's own direction.
            null_first = not self.item.nulls_last
            if self.item.descending:
                null_first = not null_first
            return (self.value is None) == null_first
        return self.value < other.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SortKey) and self.value == other.value


def run(query: Query, store: Store) -> tuple[list[tuple[str, Record]], int]:
    """Run a parsed query; return (record id, selected fields) pairs and the total count.

    For `COUNT()` the list is empty and the count is the number of matching records.
    """
    with store.lock:
        matching = [record for record in store.rows(query.object_def) if query.where is None or _matches(query.where, record)]
        if query.is_count:
            return [], len(matching)
        for item in reversed(query.order_by):
            matching.sort(key=lambda record, item=item: _SortKey(record.get(item.field_def.name), item), reverse=item.descending)
        matching = matching[query.offset :]
        if query.limit is not None:
            matching = matching[: query.limit]
        selected = [
            (record["Id"], {field_def.name: record.get(field_def.name) for field_def in query.fields})
            for record in matching
        ]
    return selected, len(selected)
