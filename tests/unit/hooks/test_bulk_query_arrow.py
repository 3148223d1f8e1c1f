"""Bulk API 2.0 query result pages parsed by pyarrow: the same rows as csv.DictReader reads."""

from __future__ import annotations

import csv
import io
import random

import pyarrow as pa
import pytest
import requests

from airflow_provider_m2m.hooks.salesforce import _csv_page_rows, _csv_page_table


def _page(content: bytes) -> requests.Response:
    """Build the response of a result page request, as requests returns it for a text/csv body."""
    response = requests.Response()
    response.status_code = 200
    response.headers["Content-Type"] = "text/csv"
    response._content = content
    return response


AWKWARD_PAGE = (
    '"Id","Name","Notes__c"\n'
    '"a01","Comma, inside","He said ""hi"""\n'
    '"a02","","line one\nline two\r\nline three\rend"\n'
    '"a03","Zoë Łukasz 株式会社 🚀",""\n'
    '"a04"," padded ",","\n'
).encode()


@pytest.mark.parametrize(
    "content",
    [
        AWKWARD_PAGE,
        b'"Id","Name"\r\n"a01","crlf"\r\n"a02",""\r\n',
        b"Id,Name\n001,true\n002,\n",
        b'"Id"\n\n""\n"x"\n',
        b'\xef\xbb\xbf"Id","Name"\n"a01","with byte order mark"\n',
        b'"Id","Name"\n"a01","bad \xff byte"\n',
        b'"Id","Name"\n"a01","no final newline"',
        b'"Id","Name"',
        b"Id\n001",
    ],
    ids=[
        "awkward-values",
        "crlf",
        "unquoted",
        "blank-line",
        "byte-order-mark",
        "invalid-utf8",
        "no-final-newline",
        "header-only-no-newline",
        "unquoted-no-final-newline",
    ],
)
def test_table_equals_dict_reader(content: bytes) -> None:
    table = _csv_page_table(_page(content))

    assert table.to_pylist() == _csv_page_rows(_page(content))
    assert set(table.schema.types) == {pa.string()}


def test_awkward_values_kept() -> None:
    rows = _csv_page_table(_page(AWKWARD_PAGE)).to_pylist()

    assert rows[0] == {"Id": "a01", "Name": "Comma, inside", "Notes__c": 'He said "hi"'}
    assert rows[1]["Name"] == ""
    assert rows[1]["Notes__c"] == "line one\nline two\r\nline three\rend"
    assert rows[2]["Name"] == "Zoë Łukasz 株式会社 🚀"
    assert rows[3]["Name"] == " padded "


def test_numbers_and_nulls_stay_text() -> None:
    content = b'"Id","Count__c","Flag__c","Empty__c"\n"007","00123","NaN","NULL"\n"008","1e3","null",""\n'

    table = _csv_page_table(_page(content))

    assert [column.null_count for column in table.columns] == [0, 0, 0, 0]
    assert table.to_pylist()[0] == {"Id": "007", "Count__c": "00123", "Flag__c": "NaN", "Empty__c": "NULL"}
    assert table.to_pylist()[1]["Empty__c"] == ""


def test_header_only_page_has_columns() -> None:
    table = _csv_page_table(_page(b'"Id","Name"\n'))

    assert table.column_names == ["Id", "Name"]
    assert table.num_rows == 0


def test_header_without_line_break_has_columns() -> None:
    table = _csv_page_table(_page(b'"Id","Name"'))

    assert table.column_names == ["Id", "Name"]
    assert table.schema.types == [pa.string(), pa.string()]
    assert table.num_rows == 0


def test_empty_page_has_no_columns() -> None:
    table = _csv_page_table(_page(b""))

    assert table.num_columns == 0
    assert table.num_rows == 0


def test_ragged_row_error_omits_text() -> None:
    content = b'"Id","Name"\n"a01","secret-looking value","extra"\n'

    with pytest.raises(ValueError) as raised:
        _csv_page_table(_page(content))

    assert "Expected 2 columns, got 3" in str(raised.value)
    assert "secret-looking value" not in str(raised.value)


def test_random_pages_equal_dict_reader() -> None:
    pieces = ["a", ",", '"', "\n", "\r", "\r\n", " ", "é", "株", "🚀", "#N/A", "", "\t", "\\", "\x00"]
    generator = random.Random(7)
    compared = 0
    for _ in range(500):
        header = [f"Field{number}__c" for number in range(generator.randint(1, 4))]
        rows = [
            ["".join(generator.choice(pieces) for _ in range(generator.randint(0, 5))) for _ in header]
            for _ in range(generator.randint(0, 6))
        ]
        buffer = io.StringIO()
        quoting = generator.choice([csv.QUOTE_ALL, csv.QUOTE_MINIMAL])
        writer = csv.writer(buffer, quoting=quoting, lineterminator=generator.choice(["\n", "\r\n"]))
        writer.writerow(header)
        writer.writerows(rows)
        content = buffer.getvalue().encode()
        try:
            expected = _csv_page_rows(_page(content))
        except csv.Error:
            # With a \n line terminator, QUOTE_MINIMAL leaves a lone CR unquoted, and csv.DictReader
            # raises csv.Error on such a field.
            continue
        compared += 1

        assert _csv_page_table(_page(content)).to_pylist() == expected, content

    assert compared > 400
