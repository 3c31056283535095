"""The gallery in a real browser: Debian's headless Chromium driven by Playwright, against
uvicorn on 127.0.0.1. These fail (they do not skip) when /usr/bin/chromium is missing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from web_fixtures import GalleryLake, chromium, live_server, shared_gallery_lake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def glake(tmp_path_factory: pytest.TempPathFactory) -> GalleryLake:
    return shared_gallery_lake(tmp_path_factory)


@pytest.fixture(scope="module")
def base_url(glake: GalleryLake):
    from vidprom_lake.web import create_app, open_gallery

    with live_server(create_app(open_gallery(str(glake.path)))) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any):
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.set_default_timeout(20_000)
    pg.console_errors = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    pg.dialogs = []  # type: ignore[attr-defined]

    def on_dialog(d: Any) -> None:
        pg.dialogs.append(d.message)
        d.dismiss()

    pg.on("dialog", on_dialog)
    yield pg
    ctx.close()


def wait_js(page: Any, expr: str, timeout: float = 20.0) -> None:
    """Poll a JavaScript expression until it is true. (Playwright's wait_for_function
    evaluates strings with eval, which the gallery's CSP rightly forbids.)"""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({expr})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expr}")
        page.wait_for_timeout(50)


def test_list_search_open_prompt(page: Any, base_url: str, glake: GalleryLake) -> None:
    page.goto(base_url + "/")
    items = page.locator("li.prompt-item")
    assert items.count() == 48
    # the static script runs under the CSP: a slider shows its value as it moves
    page.eval_on_selector("#max_toxicity", "e => { e.value = '0.25'; "
                          "e.dispatchEvent(new Event('input')); }")
    assert page.text_content('output[for="max_toxicity"]') == "0.25"
    # full-text search through the form
    page.fill('input[name="q"]', "dolphins")
    page.click("form.filters .search button")
    page.wait_for_url(re.compile(r".*q=dolphins.*"))
    texts = page.locator("li.prompt-item a.text").all_text_contents()
    assert texts and all("dolphins" in t.lower() for t in texts)
    # open the first result
    first = page.locator("li.prompt-item a.text").first
    want = first.text_content()
    first.click()
    page.wait_for_url(re.compile(r".*/p/[0-9a-f-]{36}$"))
    assert page.text_content("#prompt-text") == want.rstrip("…")
    assert page.console_errors == []


def test_video_plays_and_seeks(page: Any, base_url: str, glake: GalleryLake) -> None:
    ranges: list[tuple[str | None, int]] = []
    page.on("response", lambda r: "/video/" in r.url and ranges.append(
        (r.request.headers.get("range"), r.status)))
    page.goto(f"{base_url}/p/{glake.video_uuids[0]}")
    videos = page.locator("section.videos video")
    assert videos.count() == 2  # every model side by side
    v = "section.videos video[data-model='pika']"
    wait_js(page, f"document.querySelector(\"{v}\").readyState >= 1")
    duration = page.eval_on_selector(v, "e => e.duration")
    assert duration == pytest.approx(6.0, abs=0.3)
    page.eval_on_selector(v, "e => e.play()")
    wait_js(page, f"document.querySelector(\"{v}\").currentTime > 0.5")
    page.eval_on_selector(v, "e => e.pause()")
    # seek: the browser asks for bytes by range and lands where asked
    page.eval_on_selector(v, "e => new Promise(ok => { e.addEventListener('seeked', ok, "
                             "{once: true}); e.currentTime = 4.0; })")
    assert page.eval_on_selector(v, "e => e.currentTime") == pytest.approx(4.0, abs=0.2)
    page.eval_on_selector(v, "e => e.play()")
    wait_js(page, f"document.querySelector(\"{v}\").currentTime > 4.2")
    assert page.eval_on_selector(v, "e => e.error") is None
    assert any(rng and rng.startswith("bytes=") and status == 206 for rng, status in ranges)
    # the play-all button starts both models' videos
    page.click("#play-all")
    wait_js(page, "[...document.querySelectorAll('section.videos video')]"
                           ".every(e => !e.paused && e.currentTime > 0.2)")
    assert page.console_errors == []


def test_hostile_prompts_run_nothing(page: Any, base_url: str, glake: GalleryLake) -> None:
    urls = [f"{base_url}/?source=hostile-test&show_nsfw=1", f"{base_url}/?q=cat&per_page=192"]
    urls += [f"{base_url}/p/{u}" for u in glake.hostile]
    for url in urls:
        page.goto(url)
        page.wait_for_load_state("load")
        assert page.evaluate("typeof window.__pwned") == "undefined", url
        # the text is shown as text
    page.goto(f"{base_url}/p/{glake.hostile[0]}")
    assert "<script>window.__pwned" in page.text_content("#prompt-text")
    page.goto(f"{base_url}/p/{glake.hostile[1]}")
    assert page.locator("#prompt-text img").count() == 0
    # the hostile prompt with videos still plays them
    wait_js(page, "document.querySelector('section.videos video').readyState >= 1")
    assert page.dialogs == []
    assert page.console_errors == []


def test_nsfw_switch_and_grid(page: Any, base_url: str, glake: GalleryLake) -> None:
    page.goto(f"{base_url}/?source=hostile-test")
    uuids = page.locator("li.prompt-item").evaluate_all("l => l.map(e => e.dataset.uuid)")
    assert glake.nsfw_uuid not in uuids
    assert "hidden by the NSFW filter" in page.text_content("#summary")
    page.check("#show_nsfw")
    assert page.eval_on_selector("#max_toxicity", "e => e.disabled")
    page.click("form.filters > button[type=submit]")
    page.wait_for_url(re.compile(r".*show_nsfw=1.*"))
    uuids = page.locator("li.prompt-item").evaluate_all("l => l.map(e => e.dataset.uuid)")
    assert glake.nsfw_uuid in uuids
    page.goto(f"{base_url}/grid/vc2")
    imgs = page.locator("ul.grid img")
    assert imgs.count() == len(glake.video_uuids)
    wait_js(page, "[...document.querySelectorAll('ul.grid img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    assert page.console_errors == []
