"""The SQL endpoint's first line of defence against writes on the node: no quoting
trick hides INTO OUTFILE from it (chDB writes the file even with readonly=1)."""

from __future__ import annotations

import pytest

from services.runtime.errors import CiteplusError
from services.warehouse.query import ensure_read_only


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 INTO OUTFILE '/tmp/x'",
        "SELECT $$'$$ INTO OUTFILE '/tmp/x' -- '",  # a heredoc string holding a quote
        "SELECT $tag$'$tag$ INTO OUTFILE '/tmp/x' APPEND -- '",
        "select 1 into\toutfile '/tmp/x' truncate",
    ],
)
def test_into_outfile_is_refused_however_quoted(sql: str) -> None:
    with pytest.raises(CiteplusError, match="OUTFILE"):
        ensure_read_only(sql)


def test_plain_reads_pass() -> None:
    assert ensure_read_only("SELECT city, count() FROM observations GROUP BY city;") == (
        "SELECT city, count() FROM observations GROUP BY city"
    )
