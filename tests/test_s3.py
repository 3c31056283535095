"""The lake core on object storage: a real S3 API (moto's server on 127.0.0.1) at s3://bucket/lake.

Everything goes through the standard AWS environment variables (set by `s3_env`), the way a
user points VidLake at S3: create, ingest CSV and HDF5, SQL through DuckDB's lance extension,
as-of, log, diff, restore, the lease lock (conditional PUT), concurrent writers and kill -9.
"""

from __future__ import annotations

import csv
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import s3_fixtures
from click.testing import CliRunner
from s3_fixtures import list_keys
from test_kill import fingerprint, spawn, write_harness

from vidprom_lake import create_lake, open_lake, synth
from vidprom_lake import lock as lockmod
from vidprom_lake.cli import main
from vidprom_lake.errors import LakeBusy, LakeExists, LakeNotFound
from vidprom_lake.lake import _committing_batch
from vidprom_lake.lock import write_lock

pytestmark = [pytest.mark.s3, pytest.mark.slow, pytest.mark.timeout(300)]

LOCK_KEY = "lake/_vidlake.lock"

# The moto server and its environment (tests/s3_fixtures.py).
moto_s3 = s3_fixtures.moto_s3
s3_env = s3_fixtures.s3_env
s3_client = s3_fixtures.s3_client
s3_bucket = s3_fixtures.s3_bucket


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def cli_json(uri: str, *args: str) -> Any:
    result = cli("--lake", uri, *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("s3files")
    a = synth.write_vidprom_csv(d / "a.csv", 300, seed=51)
    b = synth.write_vidprom_csv(d / "b.csv", 200, seed=52)
    uuids = []
    for f in (a, b):
        with open(f, encoding="utf-8") as fh:
            uuids += [r["uuid"] for r in csv.DictReader(fh)]
    h5 = synth.write_embeddings_hdf5(d / "e.h5", uuids, 16, seed=5, model="test:random-16")
    # The same files into a local lake: the S3 lake must end up with the same content.
    ref = create_lake(d / "ref")
    for f in (a, h5, b):
        ref.ingest(str(f))
    return {"a": a, "b": b, "h5": h5, "fp": fingerprint(open_lake(ref.uri)), "dir": d,
            "harness": write_harness(d)}


def test_core_paths_on_s3(s3_bucket: str, s3_client: Any, files: dict[str, Any]) -> None:
    uri = f"s3://{s3_bucket}/lake"
    with pytest.raises(LakeNotFound):
        open_lake(uri)
    result = cli("--lake", uri, "init")
    assert result.exit_code == 0, result.output
    keys = list_keys(s3_client, s3_bucket, "lake/")
    assert any(k.startswith("lake/prompts.lance/") for k in keys)
    assert any(k.startswith("lake/batches.lance/") for k in keys)
    assert LOCK_KEY not in keys  # the lease is gone once init is done
    result = cli("--lake", uri, "init")
    assert result.exit_code != 0 and "already exists" in result.output
    with pytest.raises(LakeExists):
        create_lake(uri)

    for f in (files["a"], files["h5"], files["b"]):
        result = cli("--lake", uri, "ingest", str(f), "--report", "json")
        assert result.exit_code == 0, result.output
    lake = open_lake(uri)
    assert fingerprint(lake) == files["fp"]

    # SQL through DuckDB's lance extension, reading s3:// with the AWS variables.
    rows = cli_json(uri, "query", "select count(*) as n, count(distinct uuid) as u from prompts")
    assert rows == [{"n": 500, "u": 500}]
    nsfw = cli_json(uri, "query", "select count(*) as n from nsfw")
    assert nsfw[0]["n"] == 500 * 6
    gallery = lake.query("select count(*) as n, count(video_id) as v from gallery").to_pylist()
    assert gallery == [{"n": 500, "v": 0}]  # prompts without videos appear once
    one = lake.query("select uuid, prompt from prompts order by uuid limit 1").to_pylist()[0]
    got = lake.get_prompt(one["uuid"])
    assert got is not None and got["prompt"] == one["prompt"]
    assert lake.to_polars("prompts").collect().height == 500  # type: ignore[union-attr]

    # The log, as-of, diff, restore.
    log = cli_json(uri, "log")
    assert [(r["batch_id"], r["kind"], r["status"]) for r in log] == [
        ("batch-0000", "init", "committed"),
        ("batch-0001", "ingest", "committed"),
        ("batch-0002", "attach-embeddings", "committed"),
        ("batch-0003", "ingest", "committed"),
    ]
    assert log[2]["rows_updated"] == 300
    rows = cli_json(uri, "query", "--as-of", "batch-0001", "select count(*) as n from prompts")
    assert rows == [{"n": 300}]
    assert "embedding" not in open_lake(uri, as_of="batch-0001").dataset("prompts").schema.names
    diff = {d["table"]: d for d in cli_json(uri, "diff", "batch-0001", "batch-0003")}
    assert (diff["prompts"]["added"], diff["prompts"]["removed"], diff["prompts"]["changed"]) == (200, 0, 300)
    assert diff["videos"]["added"] == 0

    result = cli("--lake", uri, "restore", "batch-0001")
    assert result.exit_code == 0, result.output
    lake = open_lake(uri)
    assert fingerprint(lake) == fingerprint(open_lake(uri, as_of="batch-0001"))
    assert lake.count("prompts") == 300
    assert cli_json(uri, "log")[-1]["kind"] == "restore"
    # History is kept: the pre-restore state is still readable.
    assert fingerprint(open_lake(uri, as_of="batch-0003")) == files["fp"]

    # Every commit names its batch (recovery relies on it); the batch got its tag.
    ds = lake.dataset("prompts")
    assert _committing_batch(ds, log[3]["versions"]["prompts"]) == "batch-0003"
    assert ds.tags.list()["batch-0003"]["version"] == log[3]["versions"]["prompts"]

    # sql-init names the s3 tables and carries no credentials; nor does the lake.
    script = cli("--lake", uri, "sql-init").output
    assert f"'{uri}/prompts.lance'" in script and "testing-secret" not in script
    events = lake._events().to_pylist()
    assert "testing-secret" not in json.dumps(events, default=str)
    assert not any("lock" in k for k in list_keys(s3_client, s3_bucket, "lake/"))


def test_log_state_snapshot_on_s3(s3_bucket: str, s3_client: Any, files: dict[str, Any],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The folded batch log is saved as one object beside the tables and a new Lake starts
    from it (see test_versions for the local lake)."""
    from vidprom_lake import lake as lake_mod

    monkeypatch.setattr(lake_mod, "LOG_SNAPSHOT_EVERY", 4)
    uri = f"s3://{s3_bucket}/snap"
    lake = create_lake(uri)
    for i in range(4):
        with lake.batch("test", params={"i": i}):
            pass
    lake.ingest(str(files["a"]))
    assert f"snap/{lake_mod.LOG_SNAPSHOT}" in list_keys(s3_client, s3_bucket, "snap/")
    saved = lake_mod._LogState.from_json(
        s3_client.get_object(Bucket=s3_bucket, Key=f"snap/{lake_mod.LOG_SNAPSHOT}")["Body"].read())
    assert saved is not None and saved.rows >= 4
    fresh = open_lake(uri)
    full = lake_mod._LogState().refresh(fresh._open("batches"))
    assert (fresh._log().rows, fresh._log().head, fresh._log().last) == (full.rows, full.head,
                                                                         full.last)
    assert fresh.count("prompts") == 300


def test_plain_duckdb_reads_s3_tables(s3_bucket: str, files: dict[str, Any]) -> None:
    """`vidlake sql-init` output run in a plain DuckDB session (env vars only, no secrets)."""
    import duckdb

    uri = f"s3://{s3_bucket}/lake"
    lake = create_lake(uri)
    lake.ingest(str(files["a"]))
    script = cli("--lake", uri, "sql-init").output
    con = duckdb.connect()
    con.execute(script)
    n = con.execute("select count(*) from prompts where prompt is not null").fetchone()
    assert n == (300,)


# ---------------------------------------------------------------------- the lease lock
def test_lease_is_exclusive_and_released(s3_bucket: str, s3_client: Any) -> None:
    uri = f"s3://{s3_bucket}/lake"
    with write_lock(uri, timeout=1.0):
        body = json.loads(s3_client.get_object(Bucket=s3_bucket, Key=LOCK_KEY)["Body"].read())
        assert body["expires"] > time.time()
        t0 = time.monotonic()
        with pytest.raises(LakeBusy, match="_vidlake.lock"), write_lock(uri, timeout=0.6):
            pass
        assert time.monotonic() - t0 >= 0.5
        # A second writer in another thread waits, then gets it once we release.
        got = threading.Event()

        def second() -> None:
            with write_lock(uri, timeout=10.0):
                got.set()

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.5)
        assert not got.is_set()
    t.join(10)
    assert got.is_set()
    assert LOCK_KEY not in list_keys(s3_client, s3_bucket)


def test_stale_lease_is_taken_over(s3_bucket: str, s3_client: Any) -> None:
    uri = f"s3://{s3_bucket}/lake"
    s3_client.put_object(Bucket=s3_bucket, Key=LOCK_KEY, Body=json.dumps(
        {"token": "dead", "host": "elsewhere", "pid": 1, "expires": time.time() - 1}).encode())
    t0 = time.monotonic()
    with write_lock(uri, timeout=5.0):
        held = json.loads(s3_client.get_object(Bucket=s3_bucket, Key=LOCK_KEY)["Body"].read())
        assert held["token"] != "dead"
    assert time.monotonic() - t0 < 3.0


def test_live_lease_is_renewed_and_never_clobbered(s3_bucket: str, s3_client: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"s3://{s3_bucket}/lake"
    monkeypatch.setattr(lockmod, "LEASE_SECONDS", 0.9)
    with write_lock(uri, timeout=1.0):
        # Held well past its lease: renewal keeps a waiter out.
        with pytest.raises(LakeBusy), write_lock(uri, timeout=2.0):
            pass
        # Someone else's lease replaces ours (as if ours had expired and been taken over):
        # our renewals must stop, and our release must not delete theirs.
        s3_client.put_object(Bucket=s3_bucket, Key=LOCK_KEY, Body=json.dumps(
            {"token": "theirs", "expires": time.time() + 60}).encode())
        time.sleep(0.8)
    held = json.loads(s3_client.get_object(Bucket=s3_bucket, Key=LOCK_KEY)["Body"].read())
    assert held["token"] == "theirs"


# ---------------------------------------------------------------------- processes
def test_concurrent_writers_on_s3(s3_bucket: str, files: dict[str, Any]) -> None:
    uri = f"s3://{s3_bucket}/lake"
    create_lake(uri)
    procs = [spawn(files["harness"], {"point": "hold-lock", "hold": 0.3}, "--lake", uri,
                   "ingest", str(f)) for f in (files["a"], files["b"])]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    log = cli_json(uri, "log")
    assert [r["status"] for r in log] == ["committed"] * 3
    assert sorted(r["rows_added"] for r in log[1:]) == [200, 300]
    lake = open_lake(uri)
    assert lake.count("prompts") == 500
    for r in log[1:]:
        assert lake.count("prompts", where=f"batch_id = '{r['batch_id']}'") == r["rows_added"]


@pytest.mark.parametrize("point", ["lock", "data-commit"])
def test_kill_on_s3_while_holding_lease(point: str, s3_bucket: str, s3_client: Any,
                                        files: dict[str, Any]) -> None:
    """kill -9 inside the lease: readers still see the previous batch; once the lease expires
    the next writer recovers (rolling back an unlogged commit) and completes the work."""
    uri = f"s3://{s3_bucket}/lake"
    create_lake(uri).ingest(str(files["a"]))
    before = fingerprint(open_lake(uri))
    spec = {"point": point, "nth": 2 if point == "lock" else 1, "lease_seconds": 2.0}
    proc = spawn(files["harness"], spec, "--lake", uri, "ingest", str(files["b"]))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    assert LOCK_KEY in list_keys(s3_client, s3_bucket)  # the dead writer's lease is still there
    lake = open_lake(uri)  # cannot heal yet (lease held), must still read the logged head
    assert fingerprint(lake) == before
    assert lake.count("prompts") == 300

    t0 = time.monotonic()
    result = cli("--lake", uri, "ingest", str(files["b"]), "--report", "json")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - t0 < 30
    log = cli_json(uri, "log")
    assert [r["status"] for r in log] == ["committed", "committed", "aborted", "committed"]
    assert "writer died" in log[2]["message"]
    lake = open_lake(uri)
    assert lake.count("prompts") == 500
    assert lake.count("prompts", where="batch_id = 'batch-0003'") == 200
    assert LOCK_KEY not in list_keys(s3_client, s3_bucket)


def test_missing_bucket_is_a_clear_error(s3_env: dict[str, str], tmp_path: Path) -> None:
    result = cli("--lake", "s3://no-such-bucket-vidlake/lake", "log")
    assert result.exit_code == 1
    assert "no lake at s3://no-such-bucket-vidlake/lake" in result.output
    result = CliRunner().invoke(main, ["--lake", "s3://no-such-bucket-vidlake/lake", "init"])
    assert result.exit_code == 1
    assert "no bucket 'no-such-bucket-vidlake'" in result.output


def test_unreachable_endpoint_is_not_reported_as_a_missing_lake(
        s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{s3_fixtures.free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT", dead)
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    result = cli("--lake", "s3://bucket/lake", "log")
    assert result.exit_code == 1
    assert "cannot read s3://bucket/lake/batches.lance (check AWS_ENDPOINT" in result.output
    assert "no lake at" not in result.output


def test_export_to_s3(s3_bucket: str, s3_client: Any, files: dict[str, Any]) -> None:
    """Exports land on s3:// (parquet as one object, folder formats under a prefix with the
    marker last); an existing target needs --force, and foreign objects are never replaced."""
    import pyarrow.parquet as pq

    from vidprom_lake.export import MARKER

    lake = create_lake(files["dir"] / "export-src")
    lake.ingest(str(files["a"]))
    target = f"s3://{s3_bucket}/exports/prompts.parquet"
    r = cli("--lake", lake.uri, "export", "--format", "parquet", "-o", target,
            "--where", "toxicity < 0.5")
    assert r.exit_code == 0, r.output
    body = s3_client.get_object(Bucket=s3_bucket, Key="exports/prompts.parquet")["Body"].read()
    table = pq.read_table(pa_buffer_reader(body))
    assert table.num_rows == lake.count("prompts", "toxicity < 0.5") > 0
    r = cli("--lake", lake.uri, "export", "--format", "parquet", "-o", target)
    assert r.exit_code != 0 and "--force" in r.output
    r = cli("--lake", lake.uri, "export", "--format", "parquet", "-o", target, "--force")
    assert r.exit_code == 0, r.output
    body = s3_client.get_object(Bucket=s3_bucket, Key="exports/prompts.parquet")["Body"].read()
    assert pq.read_table(pa_buffer_reader(body)).num_rows == 300

    prefix = f"s3://{s3_bucket}/exports/hf/"
    r = cli("--lake", lake.uri, "export", "--format", "hf", "-o", prefix, "--limit", "20")
    assert r.exit_code == 0, r.output
    keys = list_keys(s3_client, s3_bucket, "exports/hf/")
    assert "exports/hf/" + MARKER in keys and len(keys) >= 2
    assert any(k.endswith(".arrow") for k in keys), keys
    s3_client.put_object(Bucket=s3_bucket, Key="exports/foreign/data.bin", Body=b"x")
    r = cli("--lake", lake.uri, "export", "--format", "hf", "-o", f"s3://{s3_bucket}/exports/foreign/",
            "--force")
    assert r.exit_code != 0 and "not a VidLake export" in r.output
    assert list_keys(s3_client, s3_bucket, "exports/foreign/") == ["exports/foreign/data.bin"]


def pa_buffer_reader(body: bytes) -> Any:
    import pyarrow as pa

    return pa.BufferReader(body)
