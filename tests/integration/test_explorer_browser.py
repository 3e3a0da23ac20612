"""The attention explorer page in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``
packages) driven by Selenium loads the page from ``nmt-serve``, translates a sentence, draws one heatmap row per
target piece and one column per source piece, highlights a hovered word, switches heads, and saves a screenshot.

Skips, saying why, where Chromium or its driver is not installed (``apt-get install chromium chromium-driver``).
``NMT_EXPLORER_SCREENSHOT=path.png`` keeps the screenshot there (the README's is made so);
``NMT_EXPLORER_CHECKPOINT=best.pt`` runs the test on another checkpoint than the trained test model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from serve_helpers import start_server

import nmt
from nmt.analysis.alignment import word_ids

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[browser]'")
if CHROMIUM is None or DRIVER is None:
    pytest.skip(
        "no Chromium/ChromeDriver: install Debian's packages with `apt-get install chromium chromium-driver`",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

SENTENCE = "Ein Mann mit einem roten Hemd sitzt auf einer Bank."


@pytest.fixture(scope="module")
def checkpoint(request) -> Path:
    chosen = os.environ.get("NMT_EXPLORER_CHECKPOINT")
    return Path(chosen) if chosen else request.getfixturevalue("trained_checkpoint")


@pytest.fixture(scope="module")
def server(checkpoint: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc, url = start_server(checkpoint, env, "--quiet")
    yield url
    proc.terminate()
    proc.wait(30)


@pytest.fixture
def browser(tmp_path: Path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Headless as root in a container, and no background connections (this machine reaches no outside host).
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1100",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager would try to download one.
    driver = webdriver.Chrome(service=DriverService(DRIVER), options=options)
    yield driver
    driver.quit()


def _classes(element) -> set[str]:
    return set((element.get_attribute("class") or "").split())


def test_the_page_translates_draws_the_heatmap_and_highlights_hovered_words(server, browser, checkpoint, tmp_path):
    model = nmt.load(checkpoint, device="cpu")
    (expected,) = model.translate([SENTENCE])
    tokens, source_tokens = expected.hypotheses[0].tokens, expected.source_tokens

    browser.get(server + "/")
    browser.find_element(By.ID, "source").send_keys(SENTENCE)
    browser.find_element(By.ID, "translate").click()
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#heatmap rect.cell"))

    # the translation and one row per target piece (+ EOS), one column per source piece (+ EOS), labelled
    assert browser.find_element(By.ID, "translation").text == expected.text
    rows = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#heatmap .row-label")]
    cols = [e.get_attribute("textContent") for e in browser.find_elements(By.CSS_SELECTOR, "#heatmap .col-label")]
    assert rows == [*tokens, "</s>"] and cols == [*source_tokens, "</s>"]
    cells = browser.find_elements(By.CSS_SELECTOR, "#heatmap rect.cell")
    assert len(cells) == len(rows) * len(cols)
    heatmap = browser.find_element(By.ID, "heatmap")
    assert (heatmap.get_attribute("data-rows"), heatmap.get_attribute("data-cols")) == (str(len(rows)), str(len(cols)))

    # hovering the first target word highlights its word, its pieces' rows and its links
    target_words = expected.text.split()
    pieces_of_first = [r for r, w in enumerate(word_ids(tokens, len(target_words))) if w == 0]
    word = browser.find_element(By.CSS_SELECTOR, '#words .tgt-word[data-word="0"]')
    ActionChains(browser).move_to_element(word).perform()
    wait.until(lambda d: "hl" in _classes(word))
    lit = [int(e.get_attribute("data-row")) for e in browser.find_elements(By.CSS_SELECTOR, "#heatmap .row-label.hl")]
    assert lit == pieces_of_first
    assert len(browser.find_elements(By.CSS_SELECTOR, "#heatmap .row-band")) == len(pieces_of_first)
    links = browser.find_elements(By.CSS_SELECTOR, '#words .link[data-tgt="0"]')
    assert links and all("hl" in _classes(e) for e in links)
    # a source word lights its columns
    source = browser.find_element(By.CSS_SELECTOR, '#words .src-word[data-word="1"]')
    ActionChains(browser).move_to_element(source).perform()
    src_pieces = [c for c, w in enumerate(word_ids(source_tokens, len(SENTENCE.split()))) if w == 1]
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#heatmap .col-label.hl"))
    lit = [int(e.get_attribute("data-col")) for e in browser.find_elements(By.CSS_SELECTOR, "#heatmap .col-label.hl")]
    assert lit == src_pieces and not browser.find_elements(By.CSS_SELECTOR, "#heatmap .row-label.hl")

    # layer and head selectors: every layer, the average and each head; another head redraws the heatmap
    layers = Select(browser.find_element(By.ID, "layer"))
    heads = Select(browser.find_element(By.ID, "head"))
    assert len(layers.options) == model.num_layers
    assert [o.text for o in heads.options] == ["average of all heads", *[f"head {h}" for h in range(model.num_heads)]]
    before = [c.get_attribute("fill") for c in browser.find_elements(By.CSS_SELECTOR, "#heatmap rect.cell")]
    heads.select_by_visible_text("head 1")
    after = [c.get_attribute("fill") for c in browser.find_elements(By.CSS_SELECTOR, "#heatmap rect.cell")]
    assert len(after) == len(before) and after != before
    heads.select_by_visible_text("average of all heads")

    word = browser.find_element(By.CSS_SELECTOR, '#words .tgt-word[data-word="1"]')  # redrawn: find it again
    ActionChains(browser).move_to_element(word).perform()  # the screenshot shows a highlighted word
    for _ in range(3):  # the whole page (the heatmap's box grows with the window, up to 75% of its height)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, min(height + 140, 3000))
    ActionChains(browser).move_to_element(word).perform()
    shot = Path(os.environ.get("NMT_EXPLORER_SCREENSHOT") or tmp_path / "explorer.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
