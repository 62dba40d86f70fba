"""The browsable report: index.html of a run and of a sweep.

The page is checked twice: as HTML (every link and image resolves to a file of the record,
nothing points off the machine, user text is escaped), and in a real browser, headless
Chromium from the Debian packages driven by Selenium (``pip install -e '.[browser]'``;
`.ci/run` installs both), which asserts that every image loaded, every link resolves, the
diagnosis is shown and the comparison sorts. Without Chromium or Selenium the browser tests
skip; the HTML checks always run.
"""

import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.conftest import initlab_cli, read_summary


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []
        self.scripts_with_src: list[str] = []
        self.stylesheets: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "script" and "src" in a:
            self.scripts_with_src.append(a["src"])
        if tag == "link":
            self.stylesheets.append(a.get("href", ""))


def parse(page: Path) -> _Links:
    links = _Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


def assert_self_contained(page: Path) -> _Links:
    """Every link and image of ``page`` is a relative path to an existing file or folder;
    no script or style sheet is loaded from anywhere."""
    links = parse(page)
    assert not links.scripts_with_src and not links.stylesheets
    for target in links.hrefs + links.images:
        url = urlparse(target)
        assert not url.scheme and not url.netloc, f"{target} leaves the record"
        assert (page.parent / unquote(url.path)).exists(), f"{target} of {page} does not resolve"
    return links


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A single run through the real command: key figures, tables and the page."""
    cwd = tmp_path_factory.mktemp("page_run")
    out = cwd / "run"
    result = initlab_cli("run", "-cn", "smoke", "act=relu", "init.bias=-3", f"hydra.run.dir={out}",
                         cwd=cwd)
    assert result.returncode == 0, result.stderr
    return out, result.stdout


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A 3-job sweep with a failed job (model.depth=0 is invalid)."""
    cwd = tmp_path_factory.mktemp("page_sweep")
    out = cwd / "sweep"
    result = initlab_cli("run", "-m", "-cn", "smoke", "model.depth=2,3,0", f"hydra.sweep.dir={out}",
                         cwd=cwd)
    assert result.returncode != 0  # a job failed, and the sweep says so
    return out, result.stdout


@pytest.mark.slow
def test_a_run_ends_with_its_page_which_links_only_files_of_the_record(run_dir):
    out, stdout = run_dir
    page = out / "index.html"
    assert stdout.rstrip().splitlines()[-1] == f"Report page: {page.resolve().as_uri()}"
    links = assert_self_contained(page)
    html = page.read_text(encoding="utf-8")
    # The diagnosis comes first, in words, with its severity; then figures, tables, files.
    summary = read_summary(out)
    codes = [f["code"] for f in summary["diagnosis"]]
    assert codes and "born_dead" in codes
    assert html.index('id="diagnosis"') < html.index('id="figures"') < html.index('id="tables"') \
        < html.index('id="files"')
    for f in summary["diagnosis"]:
        assert f["code"] in html and f["severity"] in html
    # Every figure drawn is shown, and every file of the record is linked.
    drawn = sorted(p.relative_to(out).as_posix() for p in (out / "figures").iterdir())
    assert drawn and sorted(links.images) == drawn
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"index.html"}
    assert files <= set(map(unquote, links.hrefs))
    for title in ("Final metrics", "Run configuration", "Gradient L2 norms", "Hidden activations"):
        assert title in html


@pytest.mark.slow
def test_report_writes_the_page_again(run_dir, tmp_path):
    out, _ = run_dir
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "index.html").unlink()
    result = initlab_cli("report", str(copy), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith((copy / "index.html").resolve().as_uri())
    links = assert_self_contained(copy / "index.html")
    assert len(links.images) > 4  # the report draws the full set


@pytest.mark.slow
def test_the_sweep_page_shows_every_job_and_the_failed_one_at_a_glance(sweep_dir):
    out, stdout = sweep_dir
    page = out / "index.html"
    assert page.resolve().as_uri() in stdout
    links = assert_self_contained(page)
    html = page.read_text(encoding="utf-8")
    # Jobs with a record link to their own page; the failed one is marked and says why.
    assert {"0/index.html", "1/index.html"} <= set(links.hrefs)
    for job in ("0", "1"):
        assert_self_contained(out / job / "index.html")
        assert "../index.html" in parse(out / job / "index.html").hrefs  # back to the sweep
    assert 'class="row-failed"' in html and "model.depth must be" in html
    assert "1 failed" in html and "2 completed" in html
    assert 'class="sortable"' in html
    assert links.images == sorted(links.images, key=lambda s: ["grad_norm_by_layer", "loss_accuracy",
                                                               "final_accuracy"].index(Path(s).stem))


@pytest.mark.slow
def test_a_job_page_shows_the_gradient_norms_the_csv_holds(sweep_dir):
    """A sweep writes its jobs' pages from their summaries: the gradient table equals the
    one read from grad_norms.csv, and the page says where the rest is."""
    from initlab.record import read_record
    from initlab.report.page import table_data
    from initlab.report.tables import grad_norm_ends_table, grad_norm_table

    out, _ = sweep_dir
    for job in ("0", "1"):
        record = read_record(out / job)
        from_csv = table_data("g", grad_norm_table(record))
        from_summary = table_data("g", grad_norm_ends_table(record.summary["grad_norms"]))
        assert (from_summary.headers, from_summary.rows) == (from_csv.headers, from_csv.rows)
        html = (out / job / "index.html").read_text(encoding="utf-8")
        assert f"initlab report {out / job}" in html
        for row in from_csv.rows:
            assert f"<td>{row[0]}</td>" in html and all(f'class="num">{v}</td>' in html for v in row[1:])


@pytest.mark.slow
def test_user_text_is_escaped(tmp_path, run_dir):
    """A message holding markup shows as text: Jinja2 escapes every value."""
    from initlab.diagnose import Finding
    from initlab.record import read_record
    from initlab.report.page import run_page

    out, _ = run_dir
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    finding = Finding("born_dead", ["fc1"], 0, 0.0, None, "<script>alert(1)</script> & co", "x<y")
    html = run_page(read_record(copy), [finding]).read_text(encoding="utf-8")
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html


@pytest.mark.slow
def test_a_page_that_cannot_be_written_says_so_in_one_line(run_dir, tmp_path):
    out, _ = run_dir
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    (copy / "index.html").unlink()
    (copy / "index.html").mkdir()  # a folder where the page goes
    result = initlab_cli("report", str(copy), cwd=tmp_path)
    assert result.returncode != 0
    assert "index.html" in result.stderr and "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------ in a real browser
def _browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install -e '.[browser]'")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--allow-file-access-from-files", "--window-size=1200,900"):
        options.add_argument(arg)
    # The driver on disk: Selenium Manager must not try to download one.
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


@pytest.fixture(scope="module")
def browser():
    driver = _browser()
    yield driver
    driver.quit()


IMAGES_NOT_LOADED = """return Array.from(document.images)
    .filter(img => { img.scrollIntoView(); return !(img.complete && img.naturalWidth > 0); })
    .map(img => img.src);"""
LINKS = "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);"


def _load(browser, page: Path):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page.resolve().as_uri())
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && Array.from(document.images)"
        ".every(i => { i.loading = 'eager'; return i.complete; });"))


def _assert_loaded(browser, page: Path, shots: Path, name: str, width: int = 1200):
    browser.set_window_size(width, 900)
    _load(browser, page)
    assert browser.execute_script(IMAGES_NOT_LOADED) == []
    for url in browser.execute_script(LINKS):
        parsed = urlparse(url)
        assert parsed.scheme == "file", url
        assert Path(unquote(parsed.path)).exists(), f"{url} does not resolve"
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(width, min(height + 100, 6000))
    browser.save_screenshot(str(shots / f"{name}-{width}.png"))


@pytest.mark.slow
def test_in_a_browser_the_run_page_shows_its_images_links_and_diagnosis(browser, run_dir, tmp_path):
    from selenium.webdriver.common.by import By

    out, _ = run_dir
    for width in (1200, 420):  # a narrow window too
        _assert_loaded(browser, out / "index.html", tmp_path, "run", width)
        diagnosis = browser.find_element(By.ID, "diagnosis")
        assert diagnosis.is_displayed() and "born_dead" in diagnosis.text
        assert "problem" in diagnosis.text
        # Readable in a narrow window: the page itself does not scroll sideways.
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1")


@pytest.mark.slow
def test_in_a_browser_the_sweep_page_sorts_and_links_every_job(browser, sweep_dir, tmp_path):
    from selenium.webdriver.common.by import By

    out, _ = sweep_dir
    _assert_loaded(browser, out / "index.html", tmp_path, "sweep")
    table = browser.find_element(By.ID, "table-comparison")
    headers = [h.text.replace("↕", "").strip() for h in table.find_elements(By.CSS_SELECTOR, "thead th")]

    def column(name):
        k = headers.index(name)
        return [r.find_elements(By.TAG_NAME, "td")[k].text
                for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

    assert column("status").count("failed") == 1
    # On an 800 px window the findings sit beside the status, in view without scrolling.
    assert headers.index("findings") == headers.index("status") + 1
    browser.set_window_size(800, 900)
    box = browser.execute_script(
        "const b = arguments[0].parentElement.getBoundingClientRect();"
        "const f = arguments[1].getBoundingClientRect(); return [b.right, f.right];",
        table, table.find_elements(By.CSS_SELECTOR, "thead th")[headers.index("findings")])
    assert box[1] <= box[0]
    header = table.find_elements(By.CSS_SELECTOR, "thead th")[headers.index("overrides")]
    header.click()
    ascending = column("overrides")
    assert ascending == sorted(ascending, key=str.lower)
    header.click()
    assert column("overrides") == ascending[::-1]
    # Each finished job's page opens from the sweep's, with its own diagnosis.
    link = browser.find_element(By.LINK_TEXT, "1")
    link.click()
    assert browser.current_url.endswith("/1/index.html")
    assert browser.find_element(By.ID, "diagnosis").is_displayed()
    for job in ("0", "1"):
        _assert_loaded(browser, out / job / "index.html", tmp_path, f"job{job}")
