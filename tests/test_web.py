"""HTTP-level tests of the gallery: starlette's TestClient, and real HTTP against uvicorn on
127.0.0.1 (ranges, concurrency, the `serve` command)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from web_fixtures import (
    NEAR_DUPS,
    GalleryLake,
    free_port,
    live_server,
    shared_gallery_lake,
)

from vidprom_lake.web.listing import uuid_keys
from vidprom_lake.web.params import BadParam, ListQuery, parse_list_query
from vidprom_lake.web.ranges import RangeNotSatisfiable, parse_range

BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def glake(tmp_path_factory: pytest.TempPathFactory) -> GalleryLake:
    return shared_gallery_lake(tmp_path_factory)


@pytest.fixture(scope="module")
def gallery(glake: GalleryLake):
    from vidprom_lake.web import open_gallery

    return open_gallery(str(glake.path))


@pytest.fixture(scope="module")
def client(gallery):
    from starlette.testclient import TestClient

    from vidprom_lake.web import create_app

    with TestClient(create_app(gallery), base_url=BASE, raise_server_exceptions=False) as c:
        yield c


def uuids_on(html: str) -> list[str]:
    return re.findall(r'class="prompt-item" data-uuid="([0-9a-f-]{36})"', html)


def summary(html: str) -> str:
    m = re.search(r'id="summary">(.*?)</p>', html, re.S)
    return " ".join(m.group(1).split()) if m else ""


# ---------------------------------------------------------------------- list, order, pages
def test_list_newest_first_paginates_and_headers(client, glake: GalleryLake, gallery) -> None:
    r = client.get("/?per_page=24")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    first = uuids_on(r.text)
    assert len(first) == 24
    second = uuids_on(client.get("/?per_page=24&page=2").text)
    assert len(second) == 24 and not set(first) & set(second)
    # newest first: compare with the lake's own times
    t = gallery.lake.query("SELECT uuid, time FROM prompts").to_pylist()
    times = {row["uuid"]: row["time"] for row in t}
    shown = [times[u] for u in first + second]
    assert shown == sorted(shown, reverse=True)
    # the high-NSFW prompt is hidden by default, shown with the switch
    hidden = summary(r.text)
    assert "hidden by the NSFW filter" in hidden
    everything = " ".join(client.get(f"/?show_nsfw=1&per_page=192&page={p}").text for p in (1, 2))
    assert glake.nsfw_uuid in uuids_on(everything)
    default = " ".join(client.get(f"/?per_page=192&page={p}").text for p in (1, 2))
    assert glake.nsfw_uuid not in uuids_on(default)


def test_orders_length_random(client, gallery) -> None:
    lengths = {r["uuid"]: len(r["prompt"]) for r in
               gallery.lake.query("SELECT uuid, prompt FROM prompts").to_pylist()}
    longest = uuids_on(client.get("/?sort=longest&per_page=48").text)
    assert [lengths[u] for u in longest] == sorted((lengths[u] for u in longest), reverse=True)
    assert lengths[longest[0]] == max(lengths.values())
    shortest = uuids_on(client.get("/?sort=shortest&per_page=48&show_nsfw=1").text)
    assert lengths[shortest[0]] == min(lengths.values())
    # random: a redirect pins the seed, the same seed gives the same pages
    r = client.get("/?sort=random", follow_redirects=False)
    assert r.status_code == 303 and "seed=" in r.headers["location"]
    a = uuids_on(client.get("/?sort=random&seed=7").text)
    b = uuids_on(client.get("/?sort=random&seed=7").text)
    c = uuids_on(client.get("/?sort=random&seed=8").text)
    assert a == b and a != c


def test_filters_source_model_dates_dedup(client, glake: GalleryLake) -> None:
    only = uuids_on(client.get("/?source=hostile-test&show_nsfw=1").text)
    assert set(only) == {*glake.hostile, glake.nsfw_uuid, *(_uuid5(t) for t in NEAR_DUPS)}
    pika = uuids_on(client.get("/?model=pika&show_nsfw=1").text)
    assert set(pika) == set(glake.video_uuids)
    anyv = uuids_on(client.get("/?model=any").text)
    assert set(anyv) == set(glake.video_uuids)
    # the hostile/near-dup prompts are dated 2023-07-02
    day = uuids_on(client.get("/?from=2023-07-02&to=2023-07-02&show_nsfw=1&per_page=192").text)
    assert set(glake.hostile) <= set(day)
    before = uuids_on(client.get("/?to=2023-07-01&per_page=192").text)
    assert not set(glake.hostile) & set(before)
    dups = uuids_on(client.get("/?dedup=duplicate&show_nsfw=1").text)
    assert _uuid5(NEAR_DUPS[1]) in dups and _uuid5(NEAR_DUPS[0]) not in dups
    uniq = uuids_on(client.get("/?dedup=unique&per_page=192&source=hostile-test").text)
    assert _uuid5(NEAR_DUPS[0]) in uniq


def test_nsfw_sliders_per_category(client, glake: GalleryLake) -> None:
    # toxicity 0.97 / insult 0.91: a slider at 1.0 on both lets it through, one at 0.95 not
    base = "/?source=hostile-test&per_page=192"
    assert glake.nsfw_uuid not in uuids_on(client.get(base).text)
    assert glake.nsfw_uuid in uuids_on(client.get(base + "&max_toxicity=1&max_insult=1").text)
    assert glake.nsfw_uuid not in uuids_on(client.get(base + "&max_toxicity=1&max_insult=0.9").text)
    # the page shows the sliders and the switch
    html = client.get("/").text
    assert html.count('type="range"') == 6 and 'name="show_nsfw"' in html


# ---------------------------------------------------------------------- search
def test_full_text_search_uses_the_index(client, gallery) -> None:
    assert gallery.fts_index
    r = client.get("/?q=dolphins")
    assert r.status_code == 200 and "Full-text search" in summary(r.text)
    found = uuids_on(r.text)
    assert found
    texts = {row["uuid"]: row["prompt"] for row in
             gallery.lake.query("SELECT uuid, prompt FROM prompts").to_pylist()}
    assert all("dolphins" in texts[u].lower() for u in found)
    assert not uuids_on(client.get("/?q=zzzqqqnothing").text)


def test_semantic_search_text_and_like(client, glake: GalleryLake) -> None:
    r = client.get("/?q=" + NEAR_DUPS[0].strip() + "&mode=semantic&source=hostile-test")
    assert r.status_code == 200
    top = uuids_on(r.text)
    assert set(top[:2]) == {_uuid5(t) for t in NEAR_DUPS}
    like = uuids_on(client.get(f"/?like={_uuid5(NEAR_DUPS[0])}").text)
    assert like[0] == _uuid5(NEAR_DUPS[1]) and _uuid5(NEAR_DUPS[0]) not in like
    assert client.get("/?like=00000000-0000-5000-8000-000000000000").status_code == 404
    assert client.get(f"/?like={glake.uuids[0]}&q=cat").status_code == 400


# ---------------------------------------------------------------------- prompt page
def test_prompt_page_metadata_flags_dups_videos(client, glake: GalleryLake, gallery) -> None:
    with_flags = gallery.lake.query(
        "SELECT uuid, flags FROM prompts WHERE flags IS NOT NULL AND coalesce(toxicity,0) < 0.5 "
        "LIMIT 1").to_pylist()[0]
    html = client.get(f"/p/{with_flags['uuid']}").text
    flags = re.search(r'id="flags">(.*?)</table>', html, re.S).group(1)
    for k, v in with_flags["flags"].items():
        if v is not None:
            assert f"<th>{k}</th>" in flags
    kept, dup = (_uuid5(t) for t in NEAR_DUPS)
    html = client.get(f"/p/{kept}").text
    assert f'href="/p/{dup}"' in re.search(r'id="duplicates">(.*?)</ul>', html, re.S).group(1)
    html = client.get(f"/p/{dup}").text
    assert f'class="dup-of" href="/p/{kept}"' in html
    html = client.get(f"/p/{glake.video_uuids[0]}").text
    srcs = re.findall(r'<video [^>]*src="([^"]+)"', html)
    assert srcs == [f"/video/{glake.video_uuids[0]}/pika", f"/video/{glake.video_uuids[0]}/vc2"]
    # the NSFW prompt's page holds its text back until asked
    html = client.get(f"/p/{glake.nsfw_uuid}").text
    assert 'id="nsfw-warning"' in html and "extremely rude" not in html
    assert "extremely rude" in client.get(f"/p/{glake.nsfw_uuid}?show_nsfw=1").text


def test_hostile_prompts_are_escaped(client, glake: GalleryLake) -> None:
    pages = [client.get("/?source=hostile-test").text, client.get(f"/p/{glake.hostile[0]}").text,
             client.get(f"/p/{glake.hostile[1]}").text, client.get("/?q=cat").text,
             client.get(f"/p/{glake.hostile[3]}").text]
    joined = "\n".join(pages)
    assert "<script>window" not in joined and "<img src=x" not in joined
    assert "<svg" not in joined and 'href="javascript:' not in joined
    assert "&lt;script&gt;window.__pwned" in joined
    # the only script element is the static file
    for html in pages:
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/gallery.js" defer>']


def test_grid_and_models(client, glake: GalleryLake) -> None:
    html = client.get("/models").text
    assert 'href="/grid/pika"' in html and 'href="/grid/vc2"' in html
    grid = client.get("/grid/pika?show_nsfw=1").text
    thumbs = re.findall(r'src="/thumb/([0-9a-f-]{36})/pika"', grid)
    assert set(thumbs) == set(glake.video_uuids)
    assert client.get("/grid/nomodel").status_code == 404
    r = client.get(f"/thumb/{glake.video_uuids[0]}/pika")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content[:3] == b"\xff\xd8\xff"
    again = client.get(f"/thumb/{glake.video_uuids[0]}/pika",
                       headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


# ---------------------------------------------------------------------- videos
def test_video_ranges_etag_and_bytes(client, glake: GalleryLake, gallery) -> None:
    from vidprom_lake.video import read_video

    u = glake.video_uuids[0]
    whole = read_video(gallery.lake, u, "pika")
    r = client.get(f"/video/{u}/pika")
    assert r.status_code == 200 and r.content == whole
    assert r.headers["content-type"] == "video/mp4" and r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(len(whole))
    assert "max-age" in r.headers["cache-control"]
    etag = r.headers["etag"]
    r = client.get(f"/video/{u}/pika", headers={"Range": "bytes=100-1099"})
    assert r.status_code == 206 and r.content == whole[100:1100]
    assert r.headers["content-range"] == f"bytes 100-1099/{len(whole)}"
    r = client.get(f"/video/{u}/pika", headers={"Range": "bytes=-500"})
    assert r.status_code == 206 and r.content == whole[-500:]
    r = client.get(f"/video/{u}/pika", headers={"Range": f"bytes={len(whole) - 10}-"})
    assert r.status_code == 206 and r.content == whole[-10:]
    r = client.get(f"/video/{u}/pika", headers={"Range": f"bytes={len(whole)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(whole)}"
    r = client.get(f"/video/{u}/pika", headers={"Range": "bytes=0-1,5-9"})
    assert r.status_code == 200 and r.content == whole  # several ranges: the whole body
    assert client.get(f"/video/{u}/pika", headers={"If-None-Match": etag}).status_code == 304
    r = client.get(f"/video/{u}/pika", headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == whole
    h = client.head(f"/video/{u}/pika")
    assert h.status_code == 200 and h.headers["content-length"] == str(len(whole)) and not h.content
    assert client.get(f"/video/{u}/ms").status_code == 404
    assert client.get(f"/video/{glake.uuids[200]}/pika").status_code == 404


# ---------------------------------------------------------------------- errors, read-only
@pytest.mark.parametrize("path", [
    "/?page=0", "/?page=abc", "/?per_page=100000", "/?sort=evil", "/?mode=x", "/?from=2023-13-01",
    "/?from=2023-07-03&to=2023-07-01", "/?source=nope", "/?model=nomodel", "/?max_toxicity=2",
    "/?max_insult=nan", "/?dedup=maybe", "/?show_nsfw=perhaps", "/?like=not-a-uuid",
    "/?q=" + "x" * 600, "/?source=' OR 1=1 --",
])
def test_bad_parameters_are_400(client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 400, path
    assert "Traceback" not in r.text and 'id="error">bad value' in r.text


@pytest.mark.parametrize("path", [
    "/p/00000000-0000-5000-8000-000000000000", "/p/not-a-uuid", "/p/..%2F..%2Fetc%2Fpasswd",
    "/video/00000000-0000-5000-8000-000000000000/pika", "/thumb/x/pika", "/nothing-here",
    "/static/nothing.js",
])
def test_unknown_ids_are_404(client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404, path
    assert "Traceback" not in r.text


def test_sql_looking_input_is_data(client) -> None:
    # a search text is a bound parameter (or a Lance FTS query string), never SQL
    for q in ["'; DROP TABLE prompts; --", "\" OR 1=1", "%", "_", "\\"]:
        r = client.get("/", params={"q": q})
        assert r.status_code == 200, q


def test_read_only_methods_and_hosts(client, gallery) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert client.request(method, "/").status_code == 405
    assert gallery.lake.read_only
    with pytest.raises(Exception, match="read-only"):
        gallery.lake.batch("ingest")
    r = client.get("/", headers={"Host": "evil.example"})
    assert r.status_code == 400  # DNS rebinding guard


def test_unexpected_error_is_a_plain_500(gallery) -> None:
    from starlette.testclient import TestClient

    from vidprom_lake.web import create_app

    app = create_app(gallery)

    class Boom:
        def __getattr__(self, name):
            raise RuntimeError("secret internal detail")

    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        real = gallery.listing
        gallery.listing = Boom()
        try:
            r = c.get("/")
        finally:
            gallery.listing = real
    assert r.status_code == 500
    assert "secret internal detail" not in r.text and "Traceback" not in r.text


def test_as_of_pins_the_lake(glake: GalleryLake) -> None:
    from starlette.testclient import TestClient

    from vidprom_lake.web import create_app, open_gallery

    old = open_gallery(str(glake.path), as_of=glake.first_batch)
    assert old.listing.n == len(glake.uuids) and old.models == []
    with TestClient(create_app(old), base_url=BASE) as c:
        html = c.get("/").text
        assert f"as of {glake.first_batch}" in html
        assert c.get(f"/p/{glake.hostile[0]}").status_code == 404
        assert c.get("/?q=cat&mode=semantic").status_code == 400  # no embeddings back then


# ---------------------------------------------------------------------- units
def test_parse_range_rules() -> None:
    assert parse_range(None, 100) is None
    r = parse_range("bytes=0-", 100)
    assert r is not None and (r.start, r.end) == (0, 99)
    r = parse_range("bytes=10-2000", 100)
    assert r is not None and (r.start, r.end) == (10, 99)
    r = parse_range("bytes=-30", 100)
    assert r is not None and (r.start, r.end) == (70, 99)
    assert parse_range("items=0-1", 100) is None and parse_range("bytes=5-1", 100) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=100-", 100)


def test_list_query_round_trips_through_its_url() -> None:
    from urllib.parse import parse_qsl, urlsplit

    lq = parse_list_query({"sort": "longest", "page": "3", "source": "s",
                           "max_toxicity": "0.2", "from": "2023-08-01"},
                          sources={"s"}, models=set())
    assert lq.page == 3 and lq.sort == "longest"
    assert parse_list_query({"q": "a  cat\n"}, sources=set(), models=set()).q == "a cat"
    again = parse_list_query(dict(parse_qsl(urlsplit(lq.url("/")).query)), sources={"s"},
                             models=set())
    assert again == lq
    assert ListQuery().nsfw_filters() == dict.fromkeys(ListQuery().nsfw_max, 0.5)
    with pytest.raises(BadParam, match="'page'"):
        parse_list_query({"page": "-1"}, sources=set(), models=set())


def test_uuid_keys_are_stable() -> None:
    a = uuid_keys(["x", "y"])
    b = uuid_keys(["y", "x"])
    assert a[0] == b[1] and a[1] == b[0] and a[0] != a[1]


# ---------------------------------------------------------------------- real HTTP
def test_live_server_concurrent_range_reads(glake: GalleryLake, gallery) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from vidprom_lake.video import read_video
    from vidprom_lake.web import create_app

    u = glake.video_uuids[1]
    whole = read_video(gallery.lake, u, "vc2")
    with live_server(create_app(gallery)) as base, httpx.Client(base_url=base) as c:
        def fetch(i: int) -> bool:
            a = (i * 977) % (len(whole) - 1)
            r = c.get(f"/video/{u}/vc2", headers={"Range": f"bytes={a}-"})
            pages = c.get("/", params={"page": str(1 + i % 3)})
            return r.status_code == 206 and r.content == whole[a:] and pages.status_code == 200

        with ThreadPoolExecutor(8) as ex:
            assert all(ex.map(fetch, range(40)))


def test_cli_serve_starts_and_warns(glake: GalleryLake, tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "vidprom_lake.cli", "--lake", str(glake.path), "serve",
           "--port", str(port), "--as-of", glake.first_batch]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "vidlake serve did not come up"
            time.sleep(0.3)
        html = httpx.get(f"http://127.0.0.1:{port}/").text
        assert f"as of {glake.first_batch}" in html
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    from click.testing import CliRunner

    from vidprom_lake.cli import main
    from vidprom_lake.web.server import exposure_warning

    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None
    assert "reachable from other machines" in (exposure_warning("0.0.0.0") or "")
    res = CliRunner().invoke(main, ["--lake", str(tmp_path / "none"), "serve"])
    assert res.exit_code == 1 and "no lake at" in res.output
    res = CliRunner().invoke(main, ["--lake", str(glake.path), "serve", "--as-of", "batch-9999"])
    assert res.exit_code == 1 and "batch-9999" in res.output


def _uuid5(text: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_DNS, text))


# ---------------------------------------------------------------------- serving from memory
def test_list_rows_from_memory_match_the_lake(gallery) -> None:
    """What a list row shows is read from the listing index, never from Lance per request:
    it must say exactly what the lake holds."""
    import numpy as np

    from vidprom_lake.web.listing import PREVIEW_CHARS

    n = gallery.listing.n
    pos = [int(p) for p in np.random.default_rng(7).choice(n, size=min(n, 60), replace=False)]
    rows = gallery.rows(pos)
    t = gallery.lake.dataset("prompts").take(pos, columns=["uuid", "prompt", "time", "source",
                                                           "unique_semantic"]).to_pylist()
    assert [r["position"] for r in rows] == pos
    for r, want in zip(rows, t, strict=True):
        text = want["prompt"]
        assert r["uuid"] == want["uuid"] and r["chars"] == len(text)
        assert r["preview"] == (text if len(text) <= PREVIEW_CHARS
                                else text[:PREVIEW_CHARS] + "…")
        assert r["time"] == want["time"] and r["source"] == want["source"]
        assert r["unique_semantic"] == want["unique_semantic"]
        assert gallery.listing.position(want["uuid"]) == r["position"]


def test_near_duplicates_index(gallery, glake: GalleryLake) -> None:
    import numpy as np

    listing = gallery.listing
    kept = listing.position(glake.near_dups[0])
    dups, total = listing.near_duplicates(kept)
    assert dups == [listing.position(glake.near_dups[1])] and total == 1
    for p in range(listing.n):  # the binary search agrees with a scan, for every prompt
        assert listing.near_duplicates(p)[0] == np.flatnonzero(listing.dup_of == p).tolist()


def test_full_text_by_row_address_equals_by_uuid(gallery) -> None:
    """The search asks Lance for row addresses (no take of the hits' uuids); mapped to
    positions they must be the rows the uuid path finds."""
    assert gallery.listing.addressable
    by_addr = gallery._full_text_search("dolphins", 100)
    gallery.listing.addressable = False
    try:
        by_uuid = gallery._full_text_search("dolphins", 100)
    finally:
        gallery.listing.addressable = True
    assert by_addr[0].size > 0
    assert by_addr[0].tolist() == by_uuid[0].tolist()
    assert by_addr[1].tolist() == by_uuid[1].tolist()


def test_row_addresses_map_to_positions(gallery) -> None:
    import numpy as np
    import pyarrow as pa

    ds = gallery.lake.dataset("prompts")
    assert len(ds.get_fragments()) > 1  # the second fragment starts past the first's rows
    t = ds.to_table(columns=["uuid"], with_row_address=True)
    pos = gallery.listing.positions_of_addresses(t.column("_rowaddr"))
    assert pos.tolist() == list(range(gallery.listing.n))
    bad = pa.array([(999 << 32) | 0, (0 << 32) | 10**6], pa.uint64())
    assert gallery.listing.positions_of_addresses(bad).tolist() == [-1, -1]
    assert np.array_equal(gallery.listing.positions_of(t.column("uuid")), pos)


def test_lake_with_deleted_rows_maps_search_hits_by_uuid(glake: GalleryLake,
                                                         tmp_path: Path) -> None:
    """Row addresses skip deleted rows' positions, so a lake with deletions searches by uuid;
    positions and rows stay right."""
    import shutil

    import lance

    from vidprom_lake import open_lake
    from vidprom_lake.web import open_gallery

    root = tmp_path / "lake"
    shutil.copytree(glake.path, root)
    lake = open_lake(str(root))
    ds = lake.dataset("prompts")
    gone = glake.uuids[3]
    pred = f"uuid = '{gone}'"
    frag = ds.get_fragment(ds.get_fragments()[0].fragment_id)
    with lake.batch("delete", params={"uuid": gone}) as b:
        b.stage("prompts", lance.LanceOperation.Delete([frag.delete(pred)], [], pred), ds.version)
    g = open_gallery(str(root))
    assert not g.listing.addressable
    assert g.listing.position(gone) is None
    after = glake.uuids[10]
    p = g.listing.position(after)
    assert p is not None and g.rows([p])[0]["uuid"] == after
    assert g.lake.dataset("prompts").take([p], columns=["uuid"]).column(0)[0].as_py() == after
    pos, _scores = g._full_text_search("dolphins", 100)
    texts = g.lake.dataset("prompts").take(pos[pos >= 0], columns=["prompt"]).column(0)
    assert pos.size and all("dolphins" in t.lower() for t in texts.to_pylist())


def test_pages_are_cached_with_etags(gallery) -> None:
    from starlette.testclient import TestClient

    from vidprom_lake.web import create_app

    app = create_app(gallery)
    with TestClient(app, base_url=BASE) as c:
        first = c.get("/?page=2&sort=longest")
        assert first.status_code == 200 and first.headers["x-cache"] == "miss"
        again = c.get("/?sort=longest&page=2")  # the same query, other order: the same page
        assert again.headers["x-cache"] == "hit" and again.text == first.text
        assert again.headers["etag"] == first.headers["etag"]
        assert again.headers["cache-control"] == "no-cache"
        r = c.get("/?page=2&sort=longest", headers={"If-None-Match": first.headers["etag"]})
        assert r.status_code == 304 and not r.content
        other = c.get("/?page=3&sort=longest")
        assert other.headers["x-cache"] == "miss" and other.text != first.text
        # thresholds that print alike in a URL are still different pages
        a = c.get("/?max_toxicity=0.1231")
        b = c.get("/?max_toxicity=0.1234")
        assert a.headers["x-cache"] == "miss" and b.headers["x-cache"] == "miss"
        for _ in range(2):  # errors are never cached
            assert c.get("/?page=0").status_code == 400
        assert app.state.pages.hits >= 1
    with TestClient(create_app(gallery, page_cache_bytes=0), base_url=BASE) as c:
        assert c.get("/?page=2").headers["x-cache"] == "miss"
        assert c.get("/?page=2").headers["x-cache"] == "miss"


def test_object_store_paths_use_worker_threads(gallery, glake: GalleryLake,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """From an object store the prompt page, thumbnails and clip reads run on worker threads
    (a local lake reads inline); the answers are the same. Large ranges stream in chunks."""
    from starlette.testclient import TestClient

    from vidprom_lake.video import read_video
    from vidprom_lake.web import app as web_app
    from vidprom_lake.web import create_app

    u = glake.video_uuids[0]
    whole = read_video(gallery.lake, u, "pika")
    monkeypatch.setattr(web_app.storage, "is_remote", lambda uri: True)
    monkeypatch.setattr(web_app, "CHUNK", 4096)  # whole clips stream chunk by chunk
    with TestClient(create_app(gallery), base_url=BASE) as c:
        assert c.get(f"/p/{u}").status_code == 200
        assert c.get(f"/thumb/{u}/pika").content[:3] == b"\xff\xd8\xff"
        r = c.get(f"/video/{u}/pika")
        assert r.status_code == 200 and r.content == whole
        r = c.get(f"/video/{u}/pika", headers={"Range": "bytes=10-"})
        assert r.status_code == 206 and r.content == whole[10:]
        r = c.get(f"/video/{u}/pika", headers={"Range": "bytes=5-104"})
        assert r.status_code == 206 and r.content == whole[5:105]
        assert c.get("/?q=dolphins").status_code == 200
        assert c.get(f"/p/{glake.uuids[0]}x").status_code == 404


def test_iter_file_can_leave_the_file_open() -> None:
    import io

    from vidprom_lake.web.ranges import iter_file

    f = io.BytesIO(b"0123456789")
    assert b"".join(iter_file(f, 2, 5, chunk=2, close=False)) == b"23456"
    assert not f.closed
    assert b"".join(iter_file(f, 0, 3, chunk=2)) == b"012" and f.closed
