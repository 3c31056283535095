"""The core commands through click's CliRunner: exit codes and the exact messages."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from vidprom_lake import synth
from vidprom_lake.cli import main


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()
    lake = str(tmp_path / "lake")

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(main, ["--lake", lake, *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    invoke.lake = lake  # type: ignore[attr-defined]
    return invoke


def test_init_ingest_query_log(run, tmp_path):
    csv_path = synth.write_vidprom_csv(tmp_path / "VidProM_unique.csv", 40, seed=5)
    assert run("init").output.strip().startswith("lake ready at ")
    r = run("init", ok=False)
    assert r.exit_code == 1 and "a lake already exists at" in r.output
    r = run("ingest", str(csv_path), "--report", "json")
    rep = json.loads(r.output)[0]
    assert (rep["batch_id"], rep["rows_added"], rep["format"]) == ("batch-0001", 40, "vidprom")
    r = run("query", "--format", "csv", "select count(*) as n from prompts")
    assert list(csv.reader(io.StringIO(r.output))) == [["n"], ["40"]]
    r = run("query", "--format", "json", "select count(*) as n from prompts where toxicity > 2")
    assert json.loads(r.output) == [{"n": 0}]
    r = run("query", "select count(*) as n from prompts")
    assert "40" in r.output and "1 row(s)" in r.output
    r = run("log", "--format", "json")
    log = json.loads(r.output)
    assert [x["batch_id"] for x in log] == ["batch-0000", "batch-0001"]
    assert log[1]["kind"] == "ingest" and log[1]["status"] == "committed" and log[1]["rows_added"] == 40


def test_query_parquet_and_as_of(run, tmp_path):
    run("init")
    run("ingest", str(synth.write_vidprom_csv(tmp_path / "a.csv", 10, seed=1)))
    run("ingest", str(synth.write_vidprom_csv(tmp_path / "b.csv", 5, seed=2)))
    out = tmp_path / "x.parquet"
    run("query", "--format", "parquet", "-o", str(out), "select uuid, prompt from prompts")
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 15
    r = run("query", "--as-of", "batch-0001", "--format", "json", "select count(*) n from prompts")
    assert json.loads(r.output) == [{"n": 10}]
    r = run("query", "--as-of", "batch-0007", "select 1", ok=False)
    assert r.exit_code == 1 and "Error: no batch batch-0007 in the log" in r.output


def test_query_refuses_writes(run):
    run("init")
    r = run("query", "drop view prompts", ok=False)
    assert r.exit_code == 1
    assert "Error: DROP statements are not allowed: `vidlake query` is read-only" in r.output


def test_bad_input_message_and_exit_code(run, tmp_path):
    run("init")
    p = tmp_path / "bad.csv"
    p.write_text("uuid,prompt,time\n,hello,someday\n")
    r = run("ingest", str(p), ok=False)
    assert r.exit_code == 1
    assert f"Error: {p}, row 1: bad timestamp 'someday' (use --skip-bad" in r.output
    r = run("ingest", str(p), "--skip-bad", "--report", "json")
    rep = json.loads(r.output)[0]
    assert rep["rows_added"] == 0 and rep["skipped_rows"] == [{"row": 1, "reason": "bad timestamp 'someday'"}]


def test_dry_run_writes_nothing(run, tmp_path):
    run("init")
    r = run("ingest", str(synth.write_vidprom_csv(tmp_path / "a.csv", 12, seed=1)), "--dry-run",
            "--report", "json")
    assert json.loads(r.output)[0]["rows_added"] == 12
    r = run("log", "--format", "json")
    assert len(json.loads(r.output)) == 1


def test_diff_restore_sql_init(run, tmp_path):
    run("init")
    run("ingest", str(synth.write_vidprom_csv(tmp_path / "a.csv", 10, seed=1)))
    run("ingest", str(synth.write_vidprom_csv(tmp_path / "b.csv", 5, seed=2)))
    r = run("diff", "batch-0001", "batch-0002", "--format", "json")
    d = {x["table"]: x for x in json.loads(r.output)}
    assert d["prompts"]["added"] == 5 and d["videos"]["added"] == 0
    r = run("restore", "batch-0001")
    assert r.output.startswith("batch-0003: the lake now equals batch-0001")
    r = run("query", "--format", "json", "select count(*) n from prompts")
    assert json.loads(r.output) == [{"n": 10}]
    r = run("sql-init")
    assert "LOAD '" in r.output and "CREATE OR REPLACE VIEW gallery" in r.output


def test_missing_lake_message(run):
    r = run("query", "select 1", ok=False)
    assert r.exit_code == 1 and "Error: no lake at" in r.output and "vidlake init" in r.output


def test_help_does_not_import_torch():
    code = ("import sys; from vidprom_lake.cli import main; "
            "from click.testing import CliRunner; CliRunner().invoke(main, ['--help']); "
            "print('torch' in sys.modules, 'diffusers' in sys.modules, 'openai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False False"


def test_shell_runs_duckdb_cli(run, tmp_path):
    run("init")
    run("ingest", str(synth.write_vidprom_csv(tmp_path / "a.csv", 7, seed=1)))
    exe = subprocess.run([sys.executable, "-m", "vidprom_lake.cli", "--help"], capture_output=True)
    assert exe.returncode == 0
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys; from vidprom_lake.cli import main; sys.exit(main())",
         "--lake", run.lake, "shell", "-csv", "-c", "select count(*) as n from prompts"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "7"


def test_demo_builds_and_shows(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["--lake", str(tmp_path / "demo"), "demo"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "VidProM CSV: batch-0001: 300 new prompts" in r.output
    assert "prompts per source" in r.output and "diffusiondb" in r.output
