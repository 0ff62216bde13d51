"""Pieces of Flink SQL text the source and sink DDL share."""

from __future__ import annotations


def quote_literal(value: str) -> str:
    """``value`` inside a SQL string literal (single quotes doubled)."""
    return value.replace("'", "''")


def with_clause(options: dict[str, str]) -> str:
    """The body of a table's ``WITH (...)``: one ``'key' = 'value'`` per line."""
    return ",\n  ".join(f"'{key}' = '{quote_literal(value)}'" for key, value in options.items())
