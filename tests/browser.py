"""Real-browser plumbing: a `streamlit run` server on a free port and headless Chromium (Debian's
`chromium` package driven by Playwright's Python client; Playwright's own browser download is never
used). Shared by the browser tests and `scripts/screenshots.py`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGE_PATHS = {"story": "", "layers": "layers", "features": "features", "feature": "feature",
              "lexicon": "lexicon", "compare": "compare", "playground": "playground", "lab": "lab",
              "validation": "validation", "quiz": "quiz", "diffing": "diffing"}
"""Each page's URL path under the app (st.navigation names a page after its file)."""


def chromium_path() -> str | None:
    """Debian's Chromium (scripts/install.sh --test installs it), or None where it is missing."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def streamlit_command(port: int, app_args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"), "--server.headless", "true",
            "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--", *app_args]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the server answers its health check; fail with its output if it dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the dashboard exited ({process.returncode}):\n{process.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"the dashboard at {url} did not answer within {timeout:.0f} s")


@contextmanager
def serve(command: list[str], url: str, cwd: Path = ROOT) -> Iterator[str]:
    """Run a dashboard command until the block ends; yields its URL."""
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def streamlit_app(app_args: Sequence[str], cwd: Path = ROOT) -> Iterator[str]:
    """`streamlit run app/main.py -- <app_args>` on a free port."""
    port = free_port()
    with serve(streamlit_command(port, app_args), f"http://127.0.0.1:{port}", cwd) as url:
        yield url


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator["object"]:
    """A Playwright page in headless Debian Chromium."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("no Chromium: `apt-get install -y chromium` (scripts/install.sh --test does it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def open_page(page, url: str, timeout_ms: float = 30_000) -> float:
    """Load `url` and wait until Streamlit has finished the script run; returns the seconds from the
    request to the last change on the page."""
    start = time.monotonic()
    page.goto(url)
    return settle(page, timeout_ms) - start


def settle(page, timeout_ms: float = 30_000, quiet_ms: int = 1000) -> float:
    """Until the app has rendered and stays still: no script run in progress (no status widget) and
    the page unchanged for `quiet_ms`. Streamlit shows its running indicator only after a delay,
    so an absent indicator alone does not mean the run has finished. Returns when (monotonic clock)
    the page last changed."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout_ms)
    deadline = time.monotonic() + timeout_ms / 1000
    state, still_since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = page.evaluate("() => [document.querySelector('[data-testid=\"stStatusWidget\"]') !== null, "
                            "document.querySelector('[data-testid=\"stMain\"]').innerHTML.length]")
        if now != state or now[0]:
            state, still_since = now, time.monotonic()
        elif (time.monotonic() - still_since) * 1000 >= quiet_ms:
            return still_since
        page.wait_for_timeout(100)
    raise TimeoutError("the page kept changing or running")


def full_height(page) -> int:
    """Height of the app's content: Streamlit scrolls inside its main block, not the document."""
    return int(page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight"))


READ_TEXT = """(until) => {
    const main = document.querySelector('[data-testid="stMain"]');
    const skip = Array.from(main.querySelectorAll('[data-testid="stVegaLiteChart"], [data-testid="stIconMaterial"]'));
    const shown = skip.map(e => e.style.display);
    skip.forEach(e => { e.style.display = 'none'; });
    let text = main.innerText;
    skip.forEach((e, i) => { e.style.display = shown[i]; });
    if (until) {
        const first = main.querySelector(until);
        const cut = first ? text.indexOf(first.innerText.trim().split('\\n')[0]) : -1;
        if (cut >= 0) text = text.slice(0, cut);
    }
    return text;
}"""


def visible_text(page) -> str:
    """The words the app's main block shows a person (not the sidebar), as the browser renders them:
    closed expanders show only their titles; the text inside charts (axis ticks, legends) and the names
    of icons are left out."""
    return page.evaluate(READ_TEXT, None)


def opening_text(page) -> str:
    """The words a page opens with (as `visible_text`): from its title to its first section (a header
    below the title) or expander."""
    return page.evaluate(READ_TEXT, 'h2, h3, [data-testid="stExpander"]')


def first_chart_top(page) -> float | None:
    """Where the first drawn chart (a vega-embed canvas or svg) starts, in pixels from the top of the
    window; None when the page draws none."""
    return page.evaluate("""() => {
        const chart = document.querySelector('[data-testid="stVegaLiteChart"] canvas, '
                                             + '[data-testid="stVegaLiteChart"] svg.marks');
        if (!chart) return null;
        const box = chart.getBoundingClientRect();
        return box.height > 0 ? box.top : null;
    }""")
