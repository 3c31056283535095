"""The prompt formats: VidProM CSV, DiffusionDB metadata parquet, and generic CSV/JSONL/Parquet.

Each turns a file into a `SourceQuery` (a DuckDB SELECT with the normalised columns); the
shared pipeline does the rest. HDF5 embeddings live in `hdf5.py`.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..schema import NSFW_LABELS
from .pipeline import IngestOptions, IngestReport, SourceQuery, extra_json_sql, quote_ident

VIDPROM_COLUMNS = ("uuid", "prompt", "time", *NSFW_LABELS)
VIDPROM_TIME_FORMAT = "%a %b %d %H:%M:%S %Y"
DIFFUSIONDB_COLUMNS = (
    "image_name", "prompt", "part_id", "seed", "step", "cfg", "sampler", "width", "height",
    "user_name", "timestamp", "image_nsfw", "prompt_nsfw",
)
PROMPT_FALLBACKS = ("prompt", "text", "caption", "content")


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _connect() -> Any:
    import duckdb

    con = duckdb.connect(":memory:")
    # Keep file order so record numbers in errors are true; bound memory for 2-core laptops.
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET enable_progress_bar = false")  # the CLI draws its own
    # the file is normalised into a temp table before it is streamed out: keep that bounded
    con.execute("SET memory_limit = '1GB'")
    con.execute(f"SET temp_directory = '{_tmp_dir()}'")
    return con


def _tmp_dir() -> str:
    """DuckDB's spill folder for this process, removed when the process exits."""
    import atexit
    import shutil
    import tempfile

    path = os.path.join(tempfile.gettempdir(), f"vidlake-duckdb-{os.getpid()}")
    atexit.register(shutil.rmtree, path, True)
    return path


def csv_header(path: str) -> list[str]:
    """The header row of a CSV (UTF-8, BOM allowed)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.readline(1 << 20)
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror}", path=path) from exc
    try:
        first = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError("the header row is not UTF-8 text", path=path, row=0) from exc
    if not first.strip():
        raise InputError("the file is empty (no header row)", path=path)
    header = next(csv.reader(io.StringIO(first)))
    return header


def _csv_error(path: str) -> Any:
    def hint(exc: Exception) -> InputError:
        text = str(exc)
        m = re.search(r"CSV Error on Line: (\d+)", text)
        why = text.split("\n")
        reason = next((ln for ln in why[2:] if ln.strip() and not ln.startswith("Original")), why[0])
        if m:
            return InputError(
                f"line {m.group(1)}: {reason.strip()} (use --skip-bad to skip unreadable records)",
                path=path)
        return InputError(text.split("\n")[0], path=path)

    return hint


def _read_csv_sql(path: str, header: list[str], skip_bad: bool) -> str:
    cols = ", ".join(f"{_lit(c)}: 'VARCHAR'" for c in header)
    opts = (
        f"delim=',', quote='\"', escape='\"', header=true, auto_detect=false, "
        f"columns={{{cols}}}, strict_mode=true, encoding='utf-8'"
    )
    if skip_bad:
        opts += ", ignore_errors=true, store_rejects=true"
    return f"read_csv({_lit(path)}, {opts})"


def _nsfw_sql(present: list[str], *, model: str | None) -> str:
    parts = []
    bad = []
    for lab in NSFW_LABELS:
        if lab in present:
            parts.append(f"TRY_CAST({quote_ident(lab)} AS FLOAT) AS {lab}")
            # bad: a value is given (not blank) that is no number in [0, 1]; one cast per row,
            # the text is looked at only for the (rare) rows that fail it
            bad.append(
                f"(CASE WHEN TRY_CAST({quote_ident(lab)} AS FLOAT) BETWEEN 0 AND 1 THEN false "
                f"ELSE {quote_ident(lab)} IS NOT NULL AND trim({quote_ident(lab)}::VARCHAR) <> '' END)"
            )
        else:
            parts.append(f"NULL::FLOAT AS {lab}")
    bad_sql = " OR ".join(bad) if bad else "false"
    model_sql = _lit(model) if (model and present) else "NULL::VARCHAR"
    return ", ".join(parts) + f", ({bad_sql}) AS nsfw_bad, {model_sql} AS nsfw_model"


# ------------------------------------------------------------------------------- VidProM CSV
def vidprom_csv(path: str, opts: IngestOptions, report: IngestReport) -> SourceQuery:
    header = csv_header(path)
    missing = [c for c in ("uuid", "prompt", "time") if c not in header]
    if missing:
        raise InputError(
            f"missing required column(s) {', '.join(missing)}; a VidProM CSV has "
            f"{', '.join(VIDPROM_COLUMNS)} (found {', '.join(header)})", path=path, row=0)
    unknown = [c for c in header if c not in VIDPROM_COLUMNS]
    _unknown(unknown, path, opts, report)
    con = _connect()
    # `time` is ctime text: the pipeline parses it (ctime_format), a compiled pass for the
    # canonical spelling and DuckDB's strptime for anything else; likewise it lowercases and
    # trims `uuid` (raw_uuids), which costs DuckDB ~0.2 us per row
    sql = (
        "SELECT NULL::BIGINT AS _row, prompt, uuid AS uuid_given, "
        "\"time\" AS time_raw, NULL::TIMESTAMP AS time, false AS time_bad, "
        "NULL::VARCHAR AS source_id, 1::BIGINT AS occurrences, "
        f"{extra_json_sql(unknown)} AS extra, "
        f"{_nsfw_sql([c for c in header if c in NSFW_LABELS], model='source:vidprom')} "
        f"FROM {_read_csv_sql(path, header, opts.skip_bad)} AS parsed"
    )
    return SourceQuery(con, sql, opts.source or "vidprom", total_bytes=Path(path).stat().st_size,
                       error_hint=_csv_error(path), ctime_format=VIDPROM_TIME_FORMAT,
                       raw_uuids=True)


def _unknown(unknown: list[str], path: str, opts: IngestOptions, report: IngestReport) -> None:
    if not unknown:
        return
    if opts.strict_columns:
        raise InputError(
            f"unknown column(s) {', '.join(unknown)} (drop --strict-columns to keep them in the "
            "`extra` JSON column)", path=path, row=0)
    report.unknown_columns = unknown
    report.notes.append(f"kept unknown column(s) {', '.join(unknown)} in the `extra` JSON column")


# ------------------------------------------------------------------------------- DiffusionDB
def diffusiondb(path: str, opts: IngestOptions, report: IngestReport) -> SourceQuery:
    con = _connect()
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({_lit(path)})").fetchall()]
    missing = [c for c in ("prompt", "timestamp") if c not in cols]
    if missing:
        raise InputError(
            f"missing required column(s) {', '.join(missing)}; DiffusionDB metadata has "
            f"{', '.join(DIFFUSIONDB_COLUMNS)}", path=path, row=0)
    unknown = [c for c in cols if c not in DIFFUSIONDB_COLUMNS]
    _unknown(unknown, path, opts, report)
    kept = [c for c in cols if c not in ("prompt", "timestamp", "image_name")]
    sql = (
        "SELECT row_number() OVER () AS _row, prompt, NULL::VARCHAR AS uuid_given, "
        "\"timestamp\"::VARCHAR AS time_raw, TRY_CAST(\"timestamp\" AS TIMESTAMPTZ) AS time, "
        "(\"timestamp\" IS NOT NULL AND TRY_CAST(\"timestamp\" AS TIMESTAMPTZ) IS NULL) AS time_bad, "
        f"{'image_name' if 'image_name' in cols else 'NULL'}::VARCHAR AS source_id, "
        f"1::BIGINT AS occurrences, {extra_json_sql(kept)} AS extra, "
        f"{_nsfw_sql([], model=None)} "
        f"FROM read_parquet({_lit(path)})"
    )
    return SourceQuery(con, sql, opts.source or "diffusiondb", aggregate=True,
                       total_bytes=Path(path).stat().st_size)


# ------------------------------------------------------------------------------- generic
def generic(path: str, opts: IngestOptions, report: IngestReport, kind: str) -> SourceQuery:
    con = _connect()
    if kind == "csv":
        header = csv_header(path)
        rel = _read_csv_sql(path, header, opts.skip_bad)
    elif kind == "jsonl":
        rel = f"read_json({_lit(path)}, format='newline_delimited', records=true)"
    elif kind == "json":
        rel = f"read_json({_lit(path)}, format='array', records=true)"
    else:
        rel = f"read_parquet({_lit(path)})"
    try:
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()]
    except Exception as exc:
        raise InputError(f"cannot read as {kind}: {str(exc).splitlines()[0]}", path=path) from exc
    prompt_col = opts.prompt_column or next((c for c in PROMPT_FALLBACKS if c in cols), None)
    if prompt_col is None or prompt_col not in cols:
        raise InputError(
            f"no prompt column {opts.prompt_column or ' / '.join(PROMPT_FALLBACKS)!r}; "
            f"columns are {', '.join(cols)} (choose one with --prompt-column)", path=path, row=0)
    for opt, name in (("--time-column", opts.time_column), ("--uuid-column", opts.uuid_column),
                      ("--id-column", opts.id_column)):
        if name and name not in cols:
            raise InputError(f"{opt} {name!r} is not a column; columns are {', '.join(cols)}",
                             path=path, row=0)
    used = {prompt_col, opts.time_column, opts.uuid_column, opts.id_column, *NSFW_LABELS}
    rest = [c for c in cols if c not in used]
    if opts.strict_columns and rest:
        raise InputError(
            f"unknown column(s) {', '.join(rest)} (drop --strict-columns to keep them in the "
            "`extra` JSON column)", path=path, row=0)
    if rest:
        report.unknown_columns = rest
        report.notes.append(f"kept column(s) {', '.join(rest)} in the `extra` JSON column")
    if opts.time_column:
        t = quote_ident(opts.time_column)
        if opts.time_format:
            parsed = f"try_strptime({t}::VARCHAR, {_lit(opts.time_format)})"
        else:
            parsed = (f"coalesce(TRY_CAST({t} AS TIMESTAMPTZ), "
                      f"CASE WHEN TRY_CAST({t} AS DOUBLE) IS NOT NULL "
                      f"THEN to_timestamp(TRY_CAST({t} AS DOUBLE)) END)")
        time_sql = (f"{t}::VARCHAR AS time_raw, {parsed} AS time, "
                    f"({t} IS NOT NULL AND {parsed} IS NULL) AS time_bad")
    else:
        time_sql = "NULL::VARCHAR AS time_raw, NULL::TIMESTAMPTZ AS time, false AS time_bad"
    uuid_sql = (f"nullif(trim(lower({quote_ident(opts.uuid_column)}::VARCHAR)), '')"
                if opts.uuid_column else "NULL::VARCHAR")
    id_sql = f"{quote_ident(opts.id_column)}::VARCHAR" if opts.id_column else "NULL::VARCHAR"
    sql = (
        f"SELECT row_number() OVER () AS _row, {quote_ident(prompt_col)}::VARCHAR AS prompt, "
        f"{uuid_sql} AS uuid_given, {time_sql}, {id_sql} AS source_id, "
        f"1::BIGINT AS occurrences, {extra_json_sql(rest)} AS extra, "
        f"{_nsfw_sql([c for c in cols if c in NSFW_LABELS], model=f'source:{opts.source or Path(path).stem}')} "
        f"FROM {rel}"
    )
    return SourceQuery(con, sql, opts.source or Path(path).stem, aggregate=True,
                       total_bytes=Path(path).stat().st_size,
                       error_hint=_csv_error(path) if kind == "csv" else None)
