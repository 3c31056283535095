"""`vidlake report`: one self-contained HTML file; hostile prompts are escaped, checked in a real
headless Chromium (Debian's `chromium`), which must be installed: the test fails, not skips,
without it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_analysis import build_known_lake

HOSTILE = [
    "<script>document.documentElement.setAttribute('data-pwned', 'script')</script> evil cat",
    "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned', 'img')\"> evil dog",
    "\"><svg onload=\"document.documentElement.setAttribute('data-pwned','svg')\"></svg> x",
    "</title></text></svg><script>document.documentElement.setAttribute('data-pwned','svgtext')</script>",
    "<style>body{display:none}</style><iframe src=\"javascript:parent.document.documentElement.setAttribute('data-pwned','iframe')\"></iframe>",
]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--virtual-time-budget=3000"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("Debian's chromium is required for the report's browser test: "
                    "apt-get install -y chromium (./dev.sh installs it)")
    return exe


def dump_dom(path: Path) -> str:
    """The DOM after the page loaded and any script had its chance to run."""
    out = subprocess.run([chromium(), *CHROMIUM_ARGS, f"--user-data-dir={path.parent / 'chrome-profile'}",
                          "--dump-dom", path.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "<html" in out.stdout, out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def hostile_lake(tmp_path_factory):
    return build_known_lake(tmp_path_factory.mktemp("hostile"), extra_prompts=HOSTILE)


@pytest.fixture(scope="module")
def html_path(hostile_lake, tmp_path_factory) -> Path:
    from vidprom_lake.report import write_report

    out = tmp_path_factory.mktemp("report") / "report.html"
    r = write_report(hostile_lake, out, clusters=2, sample=500)
    assert r.prompts_mapped == 7 and r.thumbnails == 7
    return out


def test_browser_detector_catches_a_running_script(tmp_path):
    """The check below would see a script that ran: prove it on a page with a real one."""
    page = tmp_path / "control.html"
    page.write_text("<html><body><script>document.documentElement.setAttribute('data-pwned','yes')"
                    "</script></body></html>")
    assert 'data-pwned="yes"' in dump_dom(page)


def _assert_inert(dom: str) -> None:
    from lxml import html as lhtml

    assert "data-pwned" not in dom.split("<body", 1)[0].split("<html", 1)[1].split(">", 1)[0]
    root = lhtml.fromstring(dom)
    assert root.get("data-pwned") is None
    assert root.xpath("//script") == []
    assert root.xpath("//iframe") == []
    assert root.xpath("//*[@onerror or @onload]") == []
    text = root.text_content()
    # the hostile prompts are shown as text, verbatim
    assert "<script>document.documentElement.setAttribute('data-pwned', 'script')</script> evil cat" in text
    assert "<img src=x onerror=" in text


def test_hostile_prompts_do_not_run_in_a_real_browser(html_path):
    _assert_inert(dump_dom(html_path))


def test_escaping_alone_is_enough_without_the_csp(html_path, tmp_path):
    """Strip the Content-Security-Policy: the escaping by itself must keep every script out."""
    html = html_path.read_text(encoding="utf-8")
    stripped, n = re.subn(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    assert n == 1
    page = tmp_path / "nocsp.html"
    page.write_text(stripped, encoding="utf-8")
    _assert_inert(dump_dom(page))


def test_report_is_self_contained_and_complete(html_path):
    from lxml import html as lhtml

    html = html_path.read_text(encoding="utf-8")
    root = lhtml.fromstring(html)
    # nothing fetched at view time: only data: images, no external links, scripts or styles
    for el in root.xpath("//*[@src]"):
        assert el.get("src").startswith("data:image/"), el.get("src")[:60]
    assert root.xpath("//link") == [] and root.xpath("//script") == []
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html)
    # charts, the embedding map (7 points, 2 clusters) and 7 thumbnails
    svgs = root.xpath("//svg")
    assert len(svgs) >= 8
    circles = root.xpath("//circle")
    assert len(circles) == 7
    assert len({c.get("fill") for c in circles}) == 2
    assert len(root.xpath("//figure/img")) == 7
    text = root.text_content()
    assert "Prompts per week" in text and "VidProM vs DiffusionDB" in text
    assert "test:two-clusters-8d" in text


def test_embedding_map_clusters_and_top_words(hostile_lake):
    from vidprom_lake.report import embedding_map

    scatter, note = embedding_map(hostile_lake, clusters=2, stop_words={"a", "and", "in", "the", "at"})
    assert note == ""
    assert scatter is not None and len(scatter.points) == 7
    words = sorted(c["words"] for c in scatter.clusters)
    sizes = sorted(c["size"] for c in scatter.clusters)
    assert sizes == [3, 4]
    cat = next(c for c in scatter.clusters if c["size"] == 3)
    dog = next(c for c in scatter.clusters if c["size"] == 4)
    assert set(cat["words"].split(", ")[:2]) == {"cat", "red"}, words
    assert {"green", "tree"} <= set(dog["words"].split(", ")), words


def test_report_without_vectors_or_videos(tmp_path):
    from vidprom_lake.report import write_report

    lake = build_known_lake(tmp_path, videos=False, embeddings=False)
    r = write_report(lake, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert r.prompts_mapped == 0 and r.thumbnails == 0
    assert "No vector column in prompts yet" in html and "No videos with thumbnails yet" in html


def test_report_cli_refuses_to_overwrite(hostile_lake, tmp_path):
    from click.testing import CliRunner

    from vidprom_lake.cli import main

    out = tmp_path / "r.html"
    out.write_text("keep me")
    r = CliRunner().invoke(main, ["--lake", hostile_lake.uri, "report", "-o", str(out)])
    assert r.exit_code == 1 and "exists; pass --force" in r.output
    assert out.read_text() == "keep me"
    r = CliRunner().invoke(main, ["--lake", hostile_lake.uri, "report", "-o", str(out), "--force",
                                  "--clusters", "2"])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and out.read_text().startswith("<!DOCTYPE html>")


def test_text_charts_use_a_labelled_sample_above_text_sample(hostile_lake, tmp_path):
    from lxml import html as lhtml

    from vidprom_lake.report import embedding_map, write_report

    write_report(hostile_lake, tmp_path / "s.html", clusters=2, text_sample=5)
    root = lhtml.fromstring((tmp_path / "s.html").read_text())
    heads = [h.text_content() for h in root.xpath("//h3")]
    assert "Top words (stop words removed) (uniform sample of 5 of 14 prompts)" in heads
    assert any(h.startswith("Prompt length in words (uniform sample of 5") for h in heads)
    rows = root.xpath("//h3[starts-with(., 'Sources side by side')]/following-sibling::table[1]//tbody/tr")
    assert sum(int(r.xpath("td")[1].text_content()) for r in rows) == 5
    # the map's random probing returns a sample of rows that have vectors
    small, _ = embedding_map(hostile_lake, sample=4, clusters=2)
    assert small is not None and len(small.points) == 4


def test_pca_matches_svd_both_shapes():
    import numpy as np

    from vidprom_lake.report import pca

    rng = np.random.default_rng(0)
    for shape in ((300, 20), (50, 300)):
        x = rng.normal(size=shape)
        xc = x - x.mean(0)
        _, _, vt = np.linalg.svd(xc, full_matrices=False)
        assert np.allclose(np.abs(pca(x, 3)), np.abs(xc @ vt[:3].T))
