"""Every chapter runs headless on a test budget, the book builds, and it renders in Chromium.

The chapters are executed once per test session (papermill, kernel ``python3``) into a temporary copy of
``book/``; the same copy is then built with Jupyter Book (warnings are errors) and opened in headless
Chromium to check that figures load and formulas are typeset by the locally served MathJax.

The test budget (``TEST_PROFILE`` + ``TEST_BUDGET``) runs every cell and every model of every chapter, but
at 32 px for 2 epochs: it tests that the chapters work, not what they find, and keeps ``make test`` well
inside CI's time limit on CPUs without bf16 (where the `smoke` book, ``make book``, takes about an hour).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from attnmel import book

from .browser import Browser, find_chromium

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = book.chapter_paths(ROOT / "notebooks")
EXECUTED_COPIES = ROOT / "build" / "executed"  # what `make test` hands to nbval (see the Makefile)

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

# smoke-mini with fewer, smaller training runs. Two epochs, because chapter 6's warm-up step needs one epoch
# after its warm-up; two seeds, because the across-seeds tables and paired differences need two.
TEST_PROFILE = "smoke-mini"
TEST_BUDGET = {"epochs": 2, "image_size": 32, "seeds": 2, "ladder_seeds": 2}


@pytest.fixture(scope="module")
def executed_book(tmp_path_factory):
    """A copy of book/ with every chapter executed on the test budget."""
    book_dir = tmp_path_factory.mktemp("book")
    for item in (ROOT / "book").iterdir():
        if item.is_file():
            shutil.copy2(item, book_dir / item.name)
    parameters = book.chapter_parameters(TEST_PROFILE, runs_dir=book_dir.parent / "runs") | TEST_BUDGET
    runs = book.execute_chapters(book_dir / "executed", parameters, chapters=CHAPTERS)
    # `make test` re-runs the cheap ones with nbval afterwards (their runs_dir stays in pytest's basetemp)
    EXECUTED_COPIES.mkdir(parents=True, exist_ok=True)
    for run in runs:
        if run.ok:
            shutil.copy2(run.output, EXECUTED_COPIES / run.output.name)
    return book_dir, {run.name: run for run in runs}


@pytest.mark.parametrize("chapter", [p.stem for p in CHAPTERS])
def test_chapter_executes_on_the_test_budget(executed_book, chapter):
    _, runs = executed_book
    run = runs[chapter]
    assert run.ok, f"{chapter} failed after {run.seconds:.0f} s:\n{run.error}"
    assert run.output.exists()


def test_papermill_parameter_override_changes_what_the_chapter_computes(tmp_path):
    source = ROOT / "notebooks" / "02_architecture.py"
    shapes = {}
    for size in (64, 96):
        params = book.chapter_parameters("smoke", runs_dir=tmp_path / f"runs{size}") | {"image_size": size}
        run = book.execute_chapter(source, tmp_path / f"02_{size}.ipynb", params)
        assert run.ok, run.error
        record = json.loads((tmp_path / f"runs{size}" / "02_architecture" / "architecture.json").read_text())
        assert record["image_size"] == size
        shapes[size] = record["shapes"]
    assert shapes[64]["attn3"][-2:] == [8, 8] and shapes[64]["attn4"][-2:] == [4, 4]
    assert shapes[96]["attn3"][-2:] == [12, 12] and shapes[96]["attn4"][-2:] == [6, 6]


@pytest.mark.parametrize("profile", ["isic2017-cpu", "paper"])
def test_the_architecture_chapter_needs_no_data_under_the_real_data_profiles(tmp_path, profile):
    params = book.chapter_parameters(
        profile, runs_dir=tmp_path / "runs"
    )  # no data_root: chapter 2 reads none
    run = book.execute_chapter(ROOT / "notebooks" / "02_architecture.py", tmp_path / "02.ipynb", params)
    assert run.ok, run.error
    record = json.loads((tmp_path / "runs" / "02_architecture" / "architecture.json").read_text())
    assert record["image_size"] == {"isic2017-cpu": 128, "paper": 224}[profile]


def test_a_bad_profile_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        book.chapter_parameters("fast")


@pytest.fixture(scope="module")
def built_book(executed_book):
    book_dir, runs = executed_book
    failed = [name for name, run in runs.items() if not run.ok]
    if failed:
        pytest.fail(f"cannot build the book: chapters failed: {failed}")
    return book.build_html(book_dir)


def test_book_builds_with_warnings_as_errors(built_book):
    html_dir = built_book.parent
    for chapter in CHAPTERS:
        assert (html_dir / "executed" / f"{chapter.stem}.html").exists()
    assert (html_dir / "_static" / "mathjax" / "tex-chtml.js").exists(), "MathJax must be served locally"
    for page in html_dir.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "cdn.jsdelivr.net/npm/mathjax" not in text, f"{page.name} loads MathJax from a CDN"


WAIT_FOR_MATHJAX = """
new Promise((resolve) => {
  const start = Date.now();
  (function poll() {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(() => resolve(true));
    } else if (Date.now() - start > 20000) { resolve(false); } else { setTimeout(poll, 100); }
  })();
})
"""

PAGE_REPORT = """
(() => {
  const body = document.querySelector('main') || document.body;
  const imgs = [...body.querySelectorAll('img')];
  return {
    images: imgs.map(i => ({src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth})),
    typeset: body.querySelectorAll('mjx-container').length,
    raw_math: /\\\\\\(|\\\\\\[|\\$\\$/.test(body.innerText),
  };
})()
"""


def test_book_renders_figures_and_formulas_in_chromium(built_book):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make browser installs it; needs apt and root)")
    html_dir = built_book.parent
    pages = [built_book] + [html_dir / "executed" / f"{c.stem}.html" for c in CHAPTERS]
    reports = {}
    with Browser(chromium) as browser:
        for page in pages:
            browser.goto(page.resolve().as_uri())
            has_math = browser.evaluate("document.querySelectorAll('.math').length") > 0
            if has_math:  # Sphinx loads MathJax only on pages with math
                assert browser.evaluate(WAIT_FOR_MATHJAX, await_promise=True), (
                    f"MathJax did not start on {page.name}"
                )
            reports[page.name] = browser.evaluate(PAGE_REPORT) | {"has_math": has_math}
    for name, report in reports.items():
        broken = [img["src"] for img in report["images"] if not (img["complete"] and img["width"] > 0)]
        assert broken == [], f"{name}: images that did not load: {broken}"
        assert not report["raw_math"], f"{name}: raw TeX left in the page (MathJax did not typeset it)"
        if report["has_math"]:
            assert report["typeset"] > 0, f"{name}: has math but MathJax typeset none of it"
    with_both = [n for n, r in reports.items() if r["images"] and r["typeset"] > 0]
    assert with_both, f"no chapter shows both a figure and a typeset formula: {reports}"
