"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium against a
real `modulatio serve` and a real daemon. Log in with the token; a plan approved from the
CLI appears and moves to completed without a reload; a running step's output is
followed live; a ticket approved with its button lets the plan resume. Screenshots of
the main views are saved in $MODULATIO_ARTIFACTS or beside the test's files (the path is
printed); one of them is docs/dashboard.png. Skipped, loudly, where chromium or its driver is missing
(.ci/run installs both)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import warnings
from pathlib import Path

import pytest
from helpers import PY, clean_env, cli, plan, settled, wait_ticks, write_plan
from waiting import wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    warnings.warn("WARNING: no chromium or chromedriver: the dashboard's browser test is "
                  "SKIPPED", stacklevel=1)
    pytest.skip("no chromium or chromedriver (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

STEP = '''import os, sys, time
print("hello from the step", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
print("the step is done", flush=True)
'''


def plan_status(dvault, plan_id: str) -> str:
    return plan(dvault, plan_id).status.value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(dvault, tmp_path):
    port = free_port()
    log = open(tmp_path / "serve.log", "ab")
    proc = subprocess.Popen([PY, "-m", "modulatio_d", "serve", "--vault", str(dvault.root),
                             "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, env=clean_env(), start_new_session=True)
    import httpx

    def up():
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        except httpx.TransportError:
            return False
    wait_for(up, 30, "serve answers")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", f"--user-data-dir={tmp_path / 'chrome'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shot(browser, tmp_path: Path, name: str) -> Path:
    """Save a screenshot in $MODULATIO_ARTIFACTS (CI keeps that folder), else beside the
    test's files."""
    folder = Path(os.environ.get("MODULATIO_ARTIFACTS") or tmp_path) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    browser.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def visible(browser, css: str):
    """The element, if shown now (the page re-renders its lists on each event: an element
    found a moment ago may be gone, so everything is looked up again each time)."""
    try:
        found = browser.find_elements(By.CSS_SELECTOR, css)
        return found[0] if found and found[0].is_displayed() else None
    except StaleElementReferenceException:
        return None


def click(browser, css: str, what: str, xpath: str | None = None) -> None:
    """Click the element (or the one `xpath` finds inside it) once it is there."""
    def once():
        try:
            found = visible(browser, css)
            if found is None:
                return False
            (found.find_element(By.XPATH, xpath) if xpath else found).click()
            return True
        except StaleElementReferenceException:
            return False
    wait_for(once, 30, what)


def test_a_person_watches_and_steers_the_vault(served, browser, dvault, daemons, tmp_path):
    token = (dvault.root / ".modulatio" / "api-token").read_text().split()[-1]
    browser.get(served)
    wait_for(lambda: visible(browser, "#token"), 20, "the token form")
    browser.find_element(By.ID, "token").send_keys("wrong-token-wrong-token")
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait_for(lambda: "refused" in browser.find_element(By.ID, "login-error").text, 20,
             "the wrong token refused")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait_for(lambda: visible(browser, "#board"), 20, "the board")
    wait_for(lambda: "live" == browser.find_element(By.ID, "live").text, 20, "live events")

    # A plan approved from the CLI appears as running, without a reload.
    (dvault.root / "tools" / "talk.py").write_text(STEP)
    go = tmp_path / "go"
    write_plan(dvault, "P-P-001", [{"run": [PY, str(dvault.root / "tools" / "talk.py"),
                                            str(go)]}], status="draft", title="Say hello")
    daemon = daemons()
    assert cli(dvault, "plan", "approve", "P-P-001").code == 0
    click(browser, '#running li[data-plan="P-P-001"]', "follow the running plan's output",
          ".//button")
    wait_for(lambda: "hello from the step" in browser.find_element(By.ID, "tail").text, 30,
             "the step's output, live")
    shot(browser, tmp_path, "running")
    go.touch()
    wait_for(lambda: "the step is done" in browser.find_element(By.ID, "tail").text, 30,
             "the rest of the output")
    wait_for(settled(dvault, "P-P-001", "completed"), 30, "the plan completes")
    click(browser, '#counts button[data-status="completed"]', "the completed tab")
    wait_for(lambda: visible(browser, '#plans li[data-plan="P-P-001"][data-status="completed"]'),
             30, "the plan listed as completed")

    # A step that fails pauses its plan with a ticket; the button approves it.
    needed = tmp_path / "needed"
    write_plan(dvault, "P-P-002", [{"run": dvault.step(require=needed)}], title="Needs a file")
    wait_for(lambda: visible(browser, '#tickets li[data-ticket^="P-P-002"]'), 30,
             "the ticket on the page")
    shot(browser, tmp_path, "ticket")
    needed.touch()
    click(browser, '#tickets li[data-ticket^="P-P-002"]', "the ticket's Approve button",
          ".//button[text()='Approve']")
    wait_for(settled(dvault, "P-P-002", "completed"), 30, "the plan resumes and completes")
    wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, '#tickets li[data-ticket]'),
             30, "the ticket gone from the page")
    events = browser.find_element(By.ID, "events").text
    assert "plan_completed" in events or "status_changed" in events
    shot(browser, tmp_path, "board")

    # Pause the vault with its button: a plan approved meanwhile waits; resume runs it.
    click(browser, "#pause-vault", "the pause button")
    wait_for(lambda: "vault paused" in browser.find_element(By.ID, "paused").text, 30,
             "the pause shown")
    write_plan(dvault, "P-P-003", [{"run": "true"}], title="After the pause")
    wait_ticks(daemon, dvault, 3)  # ticks that saw the plan, and left it
    assert plan_status(dvault, "P-P-003") == "approved"
    wait_for(lambda: visible(browser, "#resume-vault"), 30, "the resume button")
    click(browser, "#resume-vault", "the resume button")
    wait_for(settled(dvault, "P-P-003", "completed"), 30, "the plan runs after the resume")
    wait_for(lambda: not visible(browser, "#paused"), 30, "the pause gone from the page")

    # A phone's width: nothing is wider than the screen.
    browser.set_window_size(390, 844)
    width = browser.execute_script("return document.documentElement.scrollWidth")
    wide = browser.execute_script(
        "return [...document.querySelectorAll('body *')].filter(e => "
        "e.getBoundingClientRect().right > 391).slice(0, 5).map(e => e.tagName + '#' + "
        "e.id + '.' + e.className + ' ' + e.textContent.slice(0, 40))")
    assert width <= 390 + 1, (width, wide)
    shot(browser, tmp_path, "phone")
