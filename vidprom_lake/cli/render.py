"""Rendering results: rich tables for people, csv/json/parquet for scripts."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import click
import pyarrow as pa

FORMATS = ("table", "csv", "json")


def format_option(extra: Sequence[str] = ()) -> Any:
    return click.option(
        "--format", "fmt", type=click.Choice([*FORMATS, *extra]), default="table",
        show_default=True, help="Output format.",
    )


def _plain(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if isinstance(v, float):
        return round(v, 6)
    return v


def emit(table: pa.Table | list[dict[str, Any]], fmt: str, *, title: str | None = None,
         output: str | None = None, max_width: int = 60) -> None:
    if isinstance(table, list):
        table = pa.Table.from_pylist(table) if table else pa.table({})
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if not output:
            raise click.UsageError("--format parquet needs -o/--output FILE")
        pq.write_table(table, output)
        click.echo(f"wrote {table.num_rows:,} rows to {output}", err=True)
        return
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(output, "w", newline="")) if output else sys.stdout
        _write(table, fmt, out, title, max_width)


def _write(table: pa.Table, fmt: str, out: Any, title: str | None, max_width: int) -> None:
    if fmt == "json":
        rows = [{k: _plain(v) for k, v in r.items()} for r in table.to_pylist()]
        out.write(json.dumps(rows, default=str, ensure_ascii=False, indent=1) + "\n")
    elif fmt == "csv":
        import csv

        w = csv.writer(out)
        w.writerow(table.column_names)
        for r in table.to_pylist():
            w.writerow([_plain(r[c]) if not isinstance(r[c], dict | list) else json.dumps(r[c], default=str)
                        for c in table.column_names])
    else:
        _rich(table, title, max_width)


def _rich(table: pa.Table, title: str | None, max_width: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=title, show_lines=False)
    for name in table.column_names:
        numeric = pa.types.is_integer(table.schema.field(name).type) or pa.types.is_floating(
            table.schema.field(name).type)
        t.add_column(name, justify="right" if numeric else "left", overflow="fold",
                     max_width=max_width)
    for row in table.to_pylist():
        cells = []
        for name in table.column_names:
            v = _plain(row[name])
            if v is None:
                cells.append("[dim]NULL[/dim]")
            elif isinstance(v, int) and not isinstance(v, bool):
                cells.append(f"{v:,}")
            else:
                from rich.markup import escape

                cells.append(escape(str(v)))
        t.add_row(*cells)
    console.print(t)
    console.print(f"[dim]{table.num_rows:,} row(s)[/dim]")


def dict_rows(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": json.dumps(v, default=str) if isinstance(v, dict | list) else str(v)}
            for k, v in d.items()]


def progress_bar(label: str = "{task.description}", unit: str = "rows") -> Any:
    """The one progress bar style of the CLI: on stderr, and only when stderr is a terminal.

    `unit` is a rich text column template (it may use task fields, e.g. ``{task.fields[rate]}``).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(SpinnerColumn(), TextColumn(label), BarColumn(), MofNCompleteColumn(),
                    TextColumn(unit), TimeElapsedColumn(), TimeRemainingColumn(),
                    disable=not sys.stderr.isatty(), console=Console(stderr=True))


def emit_report(summary: dict[str, Any], fmt: str, *, title: str, problems: list[Any],
                word: str, key: str, limit: int, line: Any) -> None:
    """A command's report: a key/value table plus the first `limit` problems on stderr, or one
    JSON/CSV record with every problem under `key` (``problem.as_dict()``) for scripts."""
    if fmt != "table":
        emit([{**summary, key: [p.as_dict() for p in problems]}], fmt)
        return
    emit(dict_rows(summary), "table", title=title)
    for p in problems[:limit]:
        click.echo(f"{word}: {line(p)}" + (f" ({p.detail})" if p.detail else ""), err=True)
    if len(problems) > limit:
        click.echo(f"... {len(problems) - limit:,} more {word} "
                   f"(--show-{word} N, or --format json)", err=True)
