"""What a student sees: the widget panel in JupyterLab and the Voilà explorer, in headless Chromium.

Each test starts a real server on 127.0.0.1 (random free port, random token, temporary root
folder) whose kernel is this interpreter with this checkout importable, and drives Debian's
chromium through Playwright (the system executable: Playwright's own browser builds are never
downloaded; ``.ci/install-browser`` installs the Debian package when it is missing). It moves a
slider, changes the group attribute, presses Run, and checks that (a) no widget shows an error,
(b) the GPR table changed and (c) the chart was drawn again with other content. Screenshots of
the panel before and after, and the server logs, are written to ``test-artifacts/browser/``.

Charts offline. This browser has no internet: every request that leaves the server on
127.0.0.1 is refused (Playwright ``route.abort``) and listed in failure messages. Charts must
therefore draw with what JupyterLab and Voilà ship (their own Vega renderer, fed the Vega 5 spec
of ``viz.enable_notebook_rendering``), the SVG stored in nbconvert HTML, and the inline SVG of
the HTML reports; a chart that tried a CDN would show "Error loading script" and fail.
(Until issue 18 this test answered cdn.jsdelivr.net with vl-convert's bundle, which hid that
no chart drew offline.) ``test_charts_draw_offline_everywhere`` opens every notebook's
stored outputs, their nbconvert HTML and a report, and screenshots each notebook's first chart.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
NOTEBOOK = ROOT / "notebooks" / "03_group_privacy_risk.ipynb"
EXPLORER = ROOT / "notebooks" / "explorer.ipynb"
#: Small games, so that each run takes seconds on two busy cores.
SMALL = {"n": 600, "n_models": 8, "m": 100, "epochs": 3}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
#: Text a student would see when the widget stack or a chart is broken.
ERROR_TEXTS = (
    "Error displaying widget",      # jupyterlab_widgets cannot render a model
    "model not found",              # ipywidgets and the front-end extension drifted apart
    "Error loading script",         # altair's HTML renderer could not load vega
    "Javascript Error",             # vega-embed rejected the spec
    "Traceback (most recent call last)",
    "There was an error when executing cell",  # Voilà
)
#: The JavaScript that fingerprints every chart drawn inside an element: the SVG markup, or
#: the canvas pixels as a data URL ("" for an embed container without a drawing).
_CHARTS_JS = """root => Array.from(root.querySelectorAll('.vega-embed')).map(e => {
    const marks = e.querySelector('svg.marks, canvas.marks');   // vega's drawing surface
    if (!marks) return '';
    if (marks.tagName.toLowerCase() === 'svg') return marks.outerHTML;
    return marks.width > 0 && marks.height > 0 ? marks.toDataURL() : '';
})"""


# ---------------------------------------------------------------- environment
def _chromium() -> str:
    """Return Debian's chromium, installing it with .ci/install-browser when missing, or skip."""
    if not os.access(CHROMIUM, os.X_OK):
        script = ROOT / ".ci" / "install-browser"
        proc = subprocess.run([str(script)], capture_output=True, text=True, timeout=900, check=False)
        if not os.access(CHROMIUM, os.X_OK):
            reason = (proc.stderr or proc.stdout).strip()[-400:]
            pytest.skip(f"Debian's chromium is not at {CHROMIUM} and .ci/install-browser could not "
                        f"install it (exit {proc.returncode}): {reason}")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Jupyter:
    """A private Jupyter configuration: kernelspec, settings and caches under one folder."""

    home: Path
    env: dict[str, str]

    @classmethod
    def create(cls, home: Path) -> Jupyter:
        # The kernelspec named "python3" (the notebooks' own kernelspec name) runs this very
        # interpreter with this checkout first on the path; JUPYTER_PATH is searched first.
        spec = home / "data" / "kernels" / "python3"
        spec.mkdir(parents=True)
        kernel_env = {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "FAIRPRIV_LAB_CACHE": str(home / "results-cache"),
        }
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)", "language": "python", "env": kernel_env,
        }))
        # No "official Jupyter news?" toast and no update check: nothing over the panel.
        notification = home / "settings" / "@jupyterlab" / "apputils-extension"
        notification.mkdir(parents=True)
        (notification / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        # Every cell in the page (no virtual scrolling), so that the test sees all outputs.
        tracker = home / "settings" / "@jupyterlab" / "notebook-extension"
        tracker.mkdir(parents=True)
        (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
        env = dict(os.environ)
        env.update(
            JUPYTER_PATH=str(home / "data"),
            JUPYTER_CONFIG_DIR=str(home / "config"),
            JUPYTER_RUNTIME_DIR=str(home / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
            IPYTHONDIR=str(home / "ipython"),
        )
        return cls(home=home, env=env)


@dataclass
class Server:
    """A Jupyter server or Voilà started as a subprocess, logging to a file."""

    proc: subprocess.Popen[bytes]
    base: str
    token: str
    log: Path

    @classmethod
    def start(cls, argv: list[str], *, jupyter: Jupyter, cwd: Path, port: int, token: str,
              ready: str, log: Path, timeout: float = 120.0) -> Server:
        """Start ``argv`` and wait until GET ``ready`` answers 200."""
        base = f"http://127.0.0.1:{port}"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, cwd=cwd, env=jupyter.env, stdout=out, stderr=subprocess.STDOUT)
        server = cls(proc=proc, base=base, token=token, log=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"{argv[2]} exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{base}{ready}?token={token}", timeout=5) as resp:
                    if resp.status == 200:
                        return server
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        server.stop()
        pytest.fail(f"{argv[2]} did not answer {ready} within {timeout:.0f} s:\n{server.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _start_lab(jupyter: Jupyter, root: Path, log: Path) -> Server:
    port, token = _free_port(), secrets.token_hex(24)
    argv = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--ServerApp.terminals_enabled=False",
        # Exposes window.jupyterapp, so that the test runs commands as the menus do.
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
        "--ServerApp.jpserver_extensions={'jupyter_lsp': False, 'voila.server_extension': False}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")  # CI containers run as root
    return Server.start(argv, jupyter=jupyter, cwd=root, port=port, token=token,
                        ready="/api/status", log=log)


def _start_voila(jupyter: Jupyter, notebook: Path, log: Path) -> Server:
    port, token = _free_port(), secrets.token_hex(24)
    argv = [
        sys.executable, "-m", "voila", str(notebook), "--no-browser",
        "--Voila.ip=127.0.0.1", f"--Voila.port={port}", "--Voila.port_retries=0",
        f"--token={token}", f"--Voila.connection_dir_root={jupyter.home}",
    ]
    return Server.start(argv, jupyter=jupyter, cwd=notebook.parent, port=port, token=token,
                        ready="/voila/static/voila.js", log=log, timeout=VOILA_START_S)


#: Voilà executes the whole notebook before it sends the page, so on a loaded 2-core machine
#: the page's ``load`` can take minutes (issue 17: a 60 s default timed out under load).
#: Generous, explicit budgets; a page that never comes still fails, with Voilà's log.
VOILA_START_S = 180.0
VOILA_PAGE_S = 600.0
VOILA_RUN_S = 300.0


def _voila_page(browser: Browser, server: Server, what: str) -> tuple[Any, list[str], Callable[[], str]]:
    """Open Voilà's page within VOILA_PAGE_S; return the page, its problems and the diagnosis."""
    page, problems = browser.page(server.base)
    diagnose = _diagnose(page, server, problems, browser)
    _goto(page, f"{server.base}/?token={server.token}", what=what, timeout=VOILA_PAGE_S, diagnose=diagnose)
    return page, problems, diagnose


def _goto(page: Any, url: str, *, what: str, timeout: float, diagnose: Callable[[], str]) -> None:
    """Open url within timeout seconds, or fail with a screenshot and the server's log."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        page.goto(url, timeout=timeout * 1000, wait_until="load")
    except PlaywrightError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        pytest.fail(f"{what} did not load within {timeout:.0f} s ({first}).\n{diagnose()}")


def _copy_notebook(src: Path, dest: Path, parameters: dict[str, Any] | None = None) -> Path:
    """Copy a notebook without its stored outputs; insert parameters after the parameters cell."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    if parameters:
        at = next((i for i, c in enumerate(nb["cells"]) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
        assert at is not None, f"{src.name} has no cell tagged 'parameters'"
        source = "# Parameters of the browser test\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
        nb["cells"].insert(at + 1, {"cell_type": "code", "execution_count": None,
                                    "metadata": {"tags": ["injected-parameters"]},
                                    "outputs": [], "source": source})
    dest.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return dest


def _code_lines(notebook: Path) -> list[str]:
    """The longer lines of a notebook's code cells (to check that none is shown)."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    return [line.strip() for src in sources for line in src.splitlines() if len(line.strip()) > 20]


# ---------------------------------------------------------------- the browser
@dataclass
class Browser:
    """One Chromium for the module; a fresh context (cookies, routes) per page."""

    browser: Any
    refused: list[str] = field(default_factory=list)

    def page(self, base: str) -> tuple[Any, list[str]]:
        context = self.browser.new_context(viewport={"width": 1500, "height": 1100})
        context.route("**/*", lambda route: self._route(route, base))
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
        page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error" else None)
        page.set_default_timeout(60_000)
        return page, problems

    def _route(self, route: Any, base: str) -> None:
        """Serve the local server only; every outside request (CDNs included) is refused."""
        url = route.request.url
        if url.startswith(base + "/") or url == base:
            route.continue_()
            return
        self.refused.append(url)
        route.abort()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    pytest.importorskip("vl_convert")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield Browser(browser=chromium)
        finally:
            chromium.close()


@pytest.fixture
def jupyter(tmp_path: Path) -> Jupyter:
    return Jupyter.create(tmp_path / "jupyter")


# ---------------------------------------------------------------- driving the panel
@dataclass(frozen=True)
class PanelDriver:
    """How to drive one widget panel: the controls to change and what "done" looks like."""

    run_label: str          # text of the Run button
    slider: str             # description of the slider moved with the arrow keys
    slider_steps: int       # presses of the right arrow key
    dropdown: str           # description of the dropdown changed
    option: str             # the option chosen there
    done: str               # regex an HTML widget (the status line) matches after a new run
    shown: str              # regex it matches when a result is on screen (new or recalled)
    table: str              # text in the HTML widget that holds the GPR table

    def root(self, page: Any) -> Any:
        """The outermost output that holds the panel."""
        return page.locator(".jp-OutputArea-output", has=page.locator(
            "button.widget-button", has_text=self.run_label)).first

    def state(self, page: Any) -> dict[str, Any]:
        root = self.root(page)
        tables = root.locator(".widget-html", has_text=self.table)
        others = root.locator(".widget-html").filter(has_not_text=self.table)
        return {
            "table": tables.last.inner_text() if tables.count() else "",
            "message": " | ".join(t.strip() for t in others.all_inner_texts() if t.strip()),
            "charts": root.evaluate(_CHARTS_JS),
            "button_enabled": root.locator("button.widget-button", has_text=self.run_label).first.is_enabled(),
        }

    def run(self, page: Any) -> None:
        self.root(page).locator("button.widget-button", has_text=self.run_label).first.click()

    def control(self, page: Any, kind: str, description: str) -> Any:
        """The control of class ``widget-<kind>`` whose label reads ``description``."""
        label = page.locator("label.widget-label", has_text=re.compile(f"^{re.escape(description)}$"))
        return self.root(page).locator(f".widget-{kind}", has=label).first

    def change(self, page: Any) -> tuple[str, str]:
        """Move the slider and pick the dropdown option, as a student would; return the readouts."""
        slider = self.control(page, "slider", self.slider)
        before = slider.locator(".widget-readout").inner_text()
        slider.locator(".noUi-handle").first.focus()
        for _ in range(self.slider_steps):
            page.keyboard.press("ArrowRight")
        self.control(page, "dropdown", self.dropdown).locator("select").select_option(label=self.option)
        after = slider.locator(".widget-readout").inner_text()
        return before, after


_ALL_RUN_JS = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const cells = panel.content.model.cells;
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type === 'code' && !cell.executionCount) return false;
    }
    return panel.sessionContext.session.kernel.status === 'idle';
}"""


def _wait(page: Any, what: str, predicate: Callable[[], Any], *, timeout: float,
          diagnose: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(300)
    pytest.fail(f"Timed out after {timeout:.0f} s waiting for {what}.\n{diagnose()}")


def _visible_errors(page: Any) -> list[str]:
    text = page.locator("body").inner_text()
    found = [t for t in ERROR_TEXTS if t.lower() in text.lower()]
    n_error_outputs = page.locator("[data-mime-type='application/vnd.jupyter.error']").count()
    if n_error_outputs:
        found.append(f"{n_error_outputs} error output(s)")
    return found


_USABLE_JS = """e => {
    const r = e.getBoundingClientRect();
    if (r.width < 2 || r.height < 2) return `has no size (${r.width}x${r.height})`;
    const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
    return top && (top === e || e.contains(top)) ? '' : `is covered by <${top ? top.tagName.toLowerCase() + ' class="' + top.className + '"' : 'nothing'}>`;
}"""


def _assert_usable(locator: Any, name: str) -> None:
    """A student can see and click the control: it has a size and nothing lies over its centre."""
    locator.scroll_into_view_if_needed()
    problem = locator.evaluate(_USABLE_JS)
    assert not problem, f"the panel's {name} {problem}: a student cannot use it"


def _exercise_panel(page: Any, driver: PanelDriver, *, prefix: str, diagnose: Callable[[], str],
                    run_timeout: float) -> dict[str, Any]:
    """Render, run, change, run again; screenshots before and after. Returns timings and states."""
    timings: dict[str, float] = {}
    _wait(page, "the panel's Run button", lambda: driver.root(page).count(), timeout=run_timeout,
          diagnose=diagnose)
    t0 = time.monotonic()
    if not any(driver.state(page)["charts"]):   # a panel that starts empty: a first run
        driver.run(page)
    before = _wait(page, "the first chart and table", lambda: (
        (s := driver.state(page))["table"] and PARTIAL not in s["table"] and s["charts"] and all(s["charts"])
        and re.search(driver.shown, s["message"]) and s), timeout=run_timeout, diagnose=diagnose)
    timings["first_run_s"] = time.monotonic() - t0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.root(page).screenshot(path=str(ARTIFACTS / f"{prefix}-before.png"))
    assert not _visible_errors(page), _visible_errors(page)

    _assert_usable(driver.control(page, "slider", driver.slider).locator(".noUi-handle").first,
                   f"slider {driver.slider!r}")
    _assert_usable(driver.control(page, "dropdown", driver.dropdown).locator("select"),
                   f"dropdown {driver.dropdown!r}")
    _assert_usable(driver.root(page).locator("button.widget-button", has_text=driver.run_label).first,
                   f"button {driver.run_label!r}")
    readouts = driver.change(page)
    assert readouts[0] != readouts[1], f"the slider {driver.slider!r} did not move: {readouts}"
    t0 = time.monotonic()
    driver.run(page)
    after = _wait(page, "the table and chart of the new settings", lambda: (
        (s := driver.state(page))["button_enabled"] and re.search(driver.done, s["message"])
        and PARTIAL not in s["table"]
        and s["table"] != before["table"] and s["charts"] and all(s["charts"])
        and s["charts"] != before["charts"] and s), timeout=run_timeout, diagnose=diagnose)
    timings["second_run_s"] = time.monotonic() - t0
    page.wait_for_timeout(500)  # let the last chart finish painting before the screenshot
    driver.root(page).screenshot(path=str(ARTIFACTS / f"{prefix}-after.png"))

    # (a) no widget or chart shows an error, anywhere on the page
    assert not _visible_errors(page), _visible_errors(page)
    # (b) the GPR table changed, and shows the new group attribute's groups
    assert after["table"] != before["table"]
    # (c) the chart was drawn again with different content, as many charts as before
    assert len(after["charts"]) == len(before["charts"]) >= 1
    assert all(a != b for a, b in zip(after["charts"], before["charts"], strict=True))
    return {"timings": timings, "before": before, "after": after, "readouts": readouts}


def _diagnose(page: Any, server: Server, problems: list[str], browser: Browser) -> Callable[[], str]:
    def text() -> str:
        try:
            shot = ARTIFACTS / "failure.png"
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), timeout=15_000)
        except Exception as err:  # noqa: BLE001 - diagnostics must not hide the real failure
            shot = Path(f"(no screenshot: {err})")
        try:  # a page that never loaded has no body: do not wait for one
            has_body = page.evaluate("() => !!document.body")
            errors = _visible_errors(page) if has_body else ["(the page has no body yet)"]
        except Exception as err:  # noqa: BLE001 - diagnostics must not hide the real failure
            errors = [f"(page not readable: {type(err).__name__})"]
        return (f"screenshot: {shot}\nvisible errors: {errors}\n"
                f"browser problems: {problems[-10:]}\nrefused requests: {browser.refused[-10:]}\n"
                f"server log ({server.log}):\n{server.log_tail(6000)}")
    return text


# ---------------------------------------------------------------- the tests
#: The AuditPanel of fairpriv_lab.ui.panel: 3 -> 5 epochs, group attribute sex -> race.
PANEL = PanelDriver(run_label="Run audit", slider="Epochs", slider_steps=2,
                    dropdown="Group attribute", option="race", done=r"Done\s+in",
                    shown=r"Done\s+in|Shown\s+from\s+memory",
                    table="group privacy risk")


#: What the GPR table says while models are still training (a partial result).
PARTIAL = "so far"


def _needs(*paths: Path) -> None:
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"not in this checkout yet: {missing}")


def test_panel_in_jupyterlab(browser: Browser, jupyter: Jupyter, tmp_path: Path) -> None:
    """Open notebook 03 in JupyterLab, run all cells, use its panel, see the charts change."""
    _needs(NOTEBOOK, ROOT / "fairpriv_lab" / "ui" / "panel.py")
    root = tmp_path / "root"
    root.mkdir()
    notebook = _copy_notebook(NOTEBOOK, root / NOTEBOOK.name,
                              {**SMALL, "group": "sex", "n_boot": 200, "device": "cpu"})
    server = _start_lab(jupyter, root, tmp_path / "lab.log")
    try:
        page, problems = browser.page(server.base)
        diagnose = _diagnose(page, server, problems, browser)
        t0 = time.monotonic()
        page.goto(f"{server.base}/lab/tree/{notebook.name}?token={server.token}")
        _wait(page, "the notebook's kernel", lambda: page.evaluate(
            "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'"),
            timeout=120, diagnose=diagnose)
        lab_s = time.monotonic() - t0
        page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
        t0 = time.monotonic()
        # Run > Run All Cells; the command's promise (awaited by evaluate) ends with the last cell.
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        # Every code cell of the notebook's model has run (an execution count), kernel idle.
        _wait(page, "all cells to run", lambda: page.evaluate(_ALL_RUN_JS), timeout=180, diagnose=diagnose)
        cells_s = time.monotonic() - t0
        # The notebook's own charts (altair through viz) were drawn too.
        assert page.locator(".jp-Notebook .vega-embed").count() >= 2, diagnose()
        result = _exercise_panel(page, PANEL, prefix="lab", diagnose=diagnose, run_timeout=180)
        assert not [p for p in problems if "page error" in p], problems
        print(f"JupyterLab ready {lab_s:.1f} s; cells {cells_s:.1f} s; {result['timings']}; "
              f"epochs {result['readouts']}")
    finally:
        server.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(server.log, ARTIFACTS / "lab-server.log")


def test_explorer_in_voila(browser: Browser, jupyter: Jupyter, tmp_path: Path) -> None:
    """Serve the explorer with Voilà (no code shown), use the panel, see the charts change."""
    _needs(EXPLORER, ROOT / "fairpriv_lab" / "ui" / "panel.py")
    root = tmp_path / "root"
    root.mkdir()
    sizes = {"n_records": SMALL["n"], **{k: v for k, v in SMALL.items() if k != "n"}}
    notebook = _copy_notebook(EXPLORER, root / EXPLORER.name, {**sizes, "group": "sex", "device": "cpu"})
    t0 = time.monotonic()
    server = _start_voila(jupyter, notebook, tmp_path / "voila.log")
    try:
        page, problems, diagnose = _voila_page(browser, server, "Voilà's explorer page")
        result = _exercise_panel(page, PANEL, prefix="voila", diagnose=diagnose, run_timeout=VOILA_RUN_S)
        # Voilà shows outputs only: no code, no editor.
        assert page.locator(".cm-editor, .jp-CodeCell:not(.jp-mod-noInput)").count() == 0
        text = page.locator("body").inner_text()
        shown = [line for line in _code_lines(notebook) if line in text]
        assert not shown, f"Voilà shows code: {shown[:3]}"
        assert not [p for p in problems if "page error" in p], problems
        print(f"Voilà page {time.monotonic() - t0:.1f} s; {result['timings']}")
    finally:
        server.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(server.log, ARTIFACTS / "voila-server.log")


# ---------------------------------------------------------------- what the README points to
START_HERE = ROOT / "notebooks" / "00_start_here.ipynb"


#: Every Vega output of a page, the notebook's own and the panel's: [drawing, or "" when none]
#: and whether the renderer turned the output into an error text (it then swaps the output's
#: classes for jp-RenderedText and appends a <pre> "Javascript Error: ...").
_ALL_VEGA_OUTPUTS_JS = """() => Array.from(document.querySelectorAll('.vega-embed')).map(e => {
    const marks = e.querySelector('svg.marks, canvas.marks');
    const r = marks ? marks.getBoundingClientRect() : {width: 0, height: 0};
    const output = e.closest('.jp-OutputArea-output') || e.parentElement;
    return {drawn: !!marks && r.width > 50 && r.height > 50,
            in_panel: !!e.closest('.widget-output'),
            error: Array.from(output.querySelectorAll('pre')).map(p => p.innerText)
                        .filter(t => /Javascript Error/i.test(t)).join(' | ')};
})"""


def _stored_charts(notebook: Path) -> int:
    """How many charts a notebook's stored outputs hold (PNG of the static renderer, or Vega)."""
    return sum(1 for c in nbformat_cells(notebook) for o in c.get("outputs", [])
               if {"image/png", "application/vnd.vega.v5+json"} & set(o.get("data", {})))


def test_start_here_panel_in_voila(browser: Browser, jupyter: Jupyter, tmp_path: Path) -> None:
    """Notebook 00 as a student first sees it: its charts and its panel, without errors.

    Every chart on the page, the notebook's own Vega outputs and the panel's, is a drawing
    (SVG or canvas) and none carries "Javascript Error". (Issue 18: Voilà hands notebook
    outputs to the Vega renderer as plain JSON; the renderer drew the chart, then called
    ``setData`` to add a PNG, which plain JSON lacks, and printed the error under it. The
    outputs of ``viz.chart_mimebundle`` now carry their PNG, so the renderer stops there.)
    """
    _needs(START_HERE, ROOT / "fairpriv_lab" / "ui" / "panel.py")
    root = tmp_path / "root"
    root.mkdir()
    notebook = _copy_notebook(START_HERE, root / START_HERE.name, {**SMALL, "device": "cpu"})
    own_charts = _stored_charts(START_HERE)
    assert own_charts >= 1, "notebook 00 draws no chart of its own: this test would check nothing"
    server = _start_voila(jupyter, notebook, tmp_path / "voila-00.log")
    try:
        page, problems, diagnose = _voila_page(browser, server, "Voilà's page of notebook 00")
        _wait(page, "the panel with its table and charts, and the notebook's own charts", lambda: (
            PANEL.root(page).count() and (s := PANEL.state(page))["table"] and s["charts"]
            and all(s["charts"]) and re.search(PANEL.shown, s["message"])
            and sum(o["drawn"] or bool(o["error"]) for o in page.evaluate(_ALL_VEGA_OUTPUTS_JS)
                    if not o["in_panel"]) >= own_charts),
            timeout=VOILA_RUN_S, diagnose=diagnose)
        page.wait_for_timeout(1000)  # a renderer that fails does so just after drawing
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        PANEL.root(page).screenshot(path=str(ARTIFACTS / "notebook00-panel.png"))
        page.screenshot(path=str(ARTIFACTS / "notebook00-page.png"), full_page=True)
        outputs = page.evaluate(_ALL_VEGA_OUTPUTS_JS)
        first_own = next((i for i, o in enumerate(outputs) if not o["in_panel"]), None)
        if first_own is not None:  # the notebook's own first chart, with whatever its output shows
            chart = page.locator(".vega-embed").nth(first_own).locator("xpath=..")
            chart.scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            chart.screenshot(path=str(ARTIFACTS / "notebook00-own-chart.png"))
        own = [o for o in outputs if not o["in_panel"]]
        assert len(own) == own_charts, f"{len(own)} of notebook 00's {own_charts} charts on the page\n{diagnose()}"
        assert len(outputs) > len(own), f"no panel chart on the page\n{diagnose()}"
        broken = [o for o in outputs if not o["drawn"] or o["error"]]
        assert not broken, f"charts not drawn or with an error: {broken}\n{diagnose()}"
        assert not _visible_errors(page), diagnose()
        assert not [p for p in problems if "page error" in p], problems
    finally:
        server.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(server.log, ARTIFACTS / "voila-00-server.log")


_BROKEN_IMAGES_JS = """() => Array.from(document.images)
    .filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt || i.src.slice(0, 60))"""


def test_demo_report_page(browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's HTML report (tiny settings) draws every chart, fits the window, names its terms."""
    from fairpriv_lab.ui import demo

    for key, value in {"n": 400, "hidden": 8, "n_models": 4, "m": 60, "epochs": 2,
                       "chunk_models": 4, "batch_size": 32}.items():
        monkeypatch.setitem(demo._CPU, key, value)
    monkeypatch.setattr(demo, "_AUDIT", {"n_boot": 50, "min_group_size": 5})
    result = demo.run_demo(tmp_path / "demo_out", device="cpu", cache=tmp_path / "cache")
    assert result.report is not None and result.report.is_file()
    context = browser.browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    try:
        page.goto(result.report.as_uri(), timeout=60_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-report.png"), full_page=True)
        assert page.locator("svg").count() >= 8, "charts missing from the report"
        assert page.evaluate(_BROKEN_IMAGES_JS) == []
        text = page.locator("body").inner_text()
        for term in ("GPRP", "PA-ALOOA", "floor", "negative GPR", "largest ε̂ these 4 models could certify"):
            assert term in text, term
        # wide tables scroll inside the page: the page itself never scrolls sideways
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 1200
    finally:
        context.close()


def test_failure_messages_carry_the_log_and_a_screenshot(browser: Browser, tmp_path: Path) -> None:
    """A page that does not load fails with Voilà's log and a screenshot; a broken page is seen."""
    base = f"http://127.0.0.1:{_free_port()}"  # nothing listens there: the load fails at once
    log = tmp_path / "voila.log"
    log.write_text("[Voila] Executing notebook with kernel: python3\n[Voila] Kernel died\n")
    server = Server(proc=subprocess.Popen([sys.executable, "-c", "pass"]), base=base, token="t", log=log)
    page, problems = browser.page(base)
    try:
        with pytest.raises(pytest.fail.Exception) as failed:
            _goto(page, base + "/", what="a server that is not there", timeout=30,
                  diagnose=_diagnose(page, server, problems, browser))
        message = str(failed.value)
        assert "a server that is not there did not load within 30 s" in message
        assert "[Voila] Kernel died" in message and "screenshot: " in message
        page.set_content("<div>There was an error when executing cell 3</div>", timeout=30_000)
        assert _visible_errors(page) == ["There was an error when executing cell"]
    finally:
        page.context.close()
        server.proc.wait(timeout=10)


# ---------------------------------------------------------------- every chart, offline
#: The teaching notebooks whose stored charts are checked offline (explorer: test_explorer_in_voila).
TEACHING = sorted(p for p in (ROOT / "notebooks").glob("0*.ipynb"))

_FIRST_CHART_JS = """root => {
    const e = root.querySelector('.vega-embed');
    if (!e) return 'no .vega-embed';
    const marks = e.querySelector('svg.marks, canvas.marks');
    if (!marks) return 'a .vega-embed without a drawing: ' + e.innerText.slice(0, 200);
    const r = marks.getBoundingClientRect();
    return r.width > 50 && r.height > 50 ? '' : `a drawing of ${r.width}x${r.height}`;
}"""


def _executed_notebooks(root: Path, cache: Path) -> dict[str, Path]:
    """Every teaching notebook run with its small parameters, outputs as a student's Lab stores them."""
    from fairpriv_lab.sweep.notebook_tools import execute_notebook, small_parameters

    done = {}
    for path in TEACHING:
        out = root / path.name
        # "both": the Vega 5 spec JupyterLab draws, plus the SVG nbconvert HTML shows.
        execute_notebook(path, out, parameters=small_parameters(path), timeout=600, renderer="both",
                         env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "FAIRPRIV_LAB_CACHE": str(cache)})
        done[path.stem] = out
    return done


def _html_exports(notebooks: dict[str, Path]) -> dict[str, Path]:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    out = {}
    for stem, path in notebooks.items():
        body, _ = exporter.from_filename(str(path))
        out[stem] = path.with_suffix(".html")
        out[stem].write_text(body, encoding="utf-8")
    return out


def _report(root: Path, cache: Path) -> Path:
    from fairpriv_lab.experiment import ExperimentConfig, run
    from fairpriv_lab.ui.report import write_report

    config = ExperimentConfig(data={"name": "adult", "group": "sex", "n": 400},
                              train={"epochs": 2, "batch_size": 64}, game={"n_models": 4, "m": 40},
                              audit={"n_boot": 100, "min_group_size": 10}, device="cpu")
    return write_report(run(config, cache=cache), root / "report.html")


_HTML_CHARTS_JS = """() => {
    const svgs = [...document.querySelectorAll('svg')].filter(e => e.getBoundingClientRect().width > 50);
    const imgs = [...document.querySelectorAll('img[src^="data:image/svg+xml"]')];
    return {inline: svgs.length, images: imgs.length,
            broken: imgs.filter(i => !(i.complete && i.naturalWidth > 50)).length};
}"""


def test_charts_draw_offline_everywhere(browser: Browser, jupyter: Jupyter, tmp_path: Path) -> None:
    """No outside network at all: each notebook's stored charts draw in JupyterLab, in nbconvert
    HTML and in a report, as SVG or canvas, never as an error text; first charts screenshotted."""
    _needs(*TEACHING)
    root = tmp_path / "root"
    root.mkdir()
    cache = tmp_path / "cache"
    notebooks = _executed_notebooks(root, cache)
    pages = _html_exports(notebooks)
    report = _report(root, cache)
    server = _start_lab(jupyter, root, tmp_path / "lab.log")
    failures: list[str] = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        for stem, path in notebooks.items():
            # A fresh page per notebook: JupyterLab's own Vega draws the stored Vega 5 spec.
            page, problems = browser.page(server.base)
            diagnose = _diagnose(page, server, problems, browser)
            # A workspace of its own: JupyterLab would otherwise reopen the earlier notebooks too.
            page.goto(f"{server.base}/lab/workspaces/offline-{stem}/tree/{path.name}?token={server.token}")
            notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first
            n_charts = sum(1 for c in nbformat_cells(path) for o in c.get("outputs", [])
                           if "application/vnd.vega.v5+json" in o.get("data", {}))
            try:
                drawn = _wait(page, f"{stem}'s {n_charts} charts", lambda nb=notebook, k=n_charts: (
                    nb.count() and (d := nb.evaluate(_CHARTS_JS)) and len(d) >= k and all(d) and d),
                    timeout=180, diagnose=diagnose)
            except pytest.fail.Exception as err:
                failures.append(f"JupyterLab {stem}: {str(err)[:800]}")
                page.context.close()
                continue
            first = notebook.locator(".vega-embed:visible").first
            first.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            shot = ARTIFACTS / f"offline-{stem}-first-chart.png"
            first.screenshot(path=str(shot))
            if _visible_errors(page):
                page.screenshot(path=str(ARTIFACTS / f"offline-{stem}-failure.png"))
                failures.append(f"JupyterLab {stem}: {_visible_errors(page)} "
                                f"(screenshot {ARTIFACTS / f'offline-{stem}-failure.png'})")
            print(f"{stem}: {len(drawn)} charts drawn offline in JupyterLab; first: {shot}")
            page.evaluate("() => window.jupyterapp.serviceManager.sessions.shutdownAll()")
            page.context.close()
        page, problems = browser.page(server.base)
        for stem, html_path in [*pages.items(), ("report", report)]:
            page.goto(f"{server.base}/files/{html_path.name}?token={server.token}")
            page.wait_for_load_state("load")
            page.wait_for_timeout(300)
            found = page.evaluate(_HTML_CHARTS_JS)
            text = page.locator("body").inner_text()
            if found["inline"] + found["images"] == 0 or found["broken"] or any(
                    t.lower() in text.lower() for t in ERROR_TEXTS):
                shot = ARTIFACTS / f"offline-{stem}-html-failure.png"
                page.screenshot(path=str(shot), full_page=True)
                failures.append(f"HTML {html_path.name}: {found} (screenshot {shot})")
        page.context.close()
        assert not failures, "\n".join(failures) + f"\nrefused requests: {sorted(set(browser.refused))[:10]}"
        print(f"offline: {len(notebooks)} notebooks, {len(pages)} HTML exports and a report drew their "
              f"charts; refused {len(set(browser.refused))} outside URLs: {sorted(set(browser.refused))[:5]}")
    finally:
        server.stop()
        shutil.copy(server.log, ARTIFACTS / "offline-lab-server.log")


def nbformat_cells(path: Path) -> list[dict[str, Any]]:
    """The code cells of a stored notebook (plain JSON)."""
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]


def test_explorer_draws_partials_and_a_change_during_a_run_restarts_it(
        browser: Browser, jupyter: Jupyter, tmp_path: Path) -> None:
    """Issue 16: a partial chart appears before the run ends; moving a slider mid-run cancels it
    and the result of the new settings is drawn (Voilà explorer, synthetic data, half-split game).

    Sizes: the panel's default game (128 logistic regressions on 3,200 Adult records, chunks
    of 32: three partial pictures per run) with 30 epochs, so that a run lasts several
    seconds on an idle machine and the slider moves while it runs; about two minutes at a
    load of 10 on 2 cores, hence the generous timeouts.
    """
    _needs(EXPLORER, ROOT / "fairpriv_lab" / "ui" / "panel.py")
    root = tmp_path / "root"
    root.mkdir()
    params = {"dataset": "adult", "group": None, "n_records": 4000, "n_models": 128, "m": None,
              "epochs": 30, "device": "cpu", "run_at_start": False}
    notebook = _copy_notebook(EXPLORER, root / EXPLORER.name, params)
    server = _start_voila(jupyter, notebook, tmp_path / "voila-cancel.log")
    try:
        page, problems = browser.page(server.base)
        diagnose = _diagnose(page, server, problems, browser)
        page.goto(f"{server.base}/?token={server.token}")
        _wait(page, "the panel's Run button", lambda: PANEL.root(page).count(), timeout=300, diagnose=diagnose)
        PANEL.run(page)
        partial = _wait(page, "a partial result (a chart and 'N of 128 models so far')", lambda: (
            (s := PANEL.state(page))["table"] and PARTIAL in s["table"] and s["charts"] and all(s["charts"])
            and s), timeout=600, diagnose=diagnose)
        assert re.search(r"\d+ of 128 models", partial["table"]), partial["table"]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        PANEL.root(page).screenshot(path=str(ARTIFACTS / "voila-partial.png"))
        # The run is not over: the student moves the Epochs slider (30 -> 31).
        slider = PANEL.control(page, "slider", "Epochs")
        slider.locator(".noUi-handle").first.focus()
        page.keyboard.press("ArrowRight")
        final = _wait(page, "the new settings' result after the cancelled run", lambda: (
            (s := PANEL.state(page))["table"] and PARTIAL not in s["table"]
            and re.search(r"Done\s+in", s["message"]) and "31 epochs" in s["message"]
            and s["charts"] and all(s["charts"]) and s), timeout=600, diagnose=diagnose)
        # The first run was cancelled (said so) and the result on screen is the new settings'.
        assert "restarted after a change during the run" in final["message"], final["message"] + diagnose()
        assert "31 epochs" in final["message"].split("Showing:")[-1], final["message"]
        PANEL.root(page).screenshot(path=str(ARTIFACTS / "voila-restarted.png"))
        assert not _visible_errors(page), _visible_errors(page)
        assert not [p for p in problems if "page error" in p], problems
    finally:
        server.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(server.log, ARTIFACTS / "voila-cancel-server.log")
