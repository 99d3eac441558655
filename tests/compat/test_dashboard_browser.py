"""The dashboard (/lamina/ui/) in a real headless browser: Debian's chromium driven by Selenium through the system
chromedriver (no browser download). Pages load, live numbers change after invocations, the log tail filters, a
MicroVM is suspended from the UI. Screenshots are saved under a temp dir (printed; LAMINA_SCREENSHOTS=DIR keeps them
there instead) for a person to look at."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from microvm_support import build, client, needs_root, write_app

from helpers import create_function, invoke, invoke_ok, require_command, unique_name

pytestmark = pytest.mark.timeout(300)

HANDLER = '''
import json


def handler(event, context):
    print(json.dumps({"level": event.get("level", "INFO"), "msg": event.get("msg", "")}))
    if event.get("fail"):
        raise ValueError("dashboard failure")
    return {"ok": True}
'''

UDP_HANDLER = '''
def handler(event, context):
    return {"Replies": []}
'''

MVM_APP = '''
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class App(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

ThreadingHTTPServer(("0.0.0.0", 8080), App).serve_forever()
'''

MVM_DOCKERFILE = """FROM public.ecr.aws/lambda/microvms:al2023-minimal
WORKDIR /app
COPY app.py .
EXPOSE 8080
CMD ["python3", "app.py"]
"""


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    where = os.environ.get("LAMINA_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("dashboard-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {path}")
    return path


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver  # the test extra (make test installs it)
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium = require_command("chromium", "apt-get install chromium chromium-driver (make system-deps)")
    driver_path = shutil.which("chromedriver") or require_command("chromedriver", "apt-get install chromium-driver")
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1440,1000",
                "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait(browser, predicate, timeout: float = 20.0, what: str = "condition"):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # htmx swaps the live fragments in place: an element found a moment ago may be replaced before its text is
    # read. That is the page working, not a failure: look again on the next poll.
    return WebDriverWait(browser, timeout, poll_frequency=0.2,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(lambda d: predicate(d), message=what)


def shoot(browser, path: Path) -> None:
    """A screenshot of the whole page (the window grown to the page's height for it)."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1440, max(1000, min(int(height) + 40, 4000)))
    browser.save_screenshot(str(path))
    browser.set_window_size(1440, 1000)


def text(browser, css: str) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, css).text


def test_functions_pages_live_numbers_and_log_tail(browser, endpoint, lambda_client, shots):
    from selenium.webdriver.common.by import By

    name = unique_name("ui")
    create_function(lambda_client, name, {"app.py": HANDLER})
    try:
        invoke_ok(lambda_client, name, {"msg": "first"})
        browser.get(endpoint + "/lamina/ui/")
        wait(browser, lambda d: name in d.find_element(By.ID, "functions").text, what="the function in the table")
        assert "Active" in browser.find_element(By.ID, "functions").text
        assert browser.find_elements(By.CSS_SELECTOR, "[data-chart] canvas"), "the overview chart"
        for _ in range(5):
            invoke_ok(lambda_client, name, {"msg": "more"})
        cell = f'[data-live="fn:{name}:invocations"]'
        wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, cell).text == "6", what="the invocation count")
        time.sleep(2.5)   # two polls of the stats: the chart has points
        shoot(browser, shots / "01-functions.png")

        browser.find_element(By.LINK_TEXT, name).click()
        wait(browser, lambda d: d.find_element(By.ID, "n-invocations").text == "6", what="the function page")
        before_errors = text(browser, "#n-errors")
        for _ in range(3):
            invoke_ok(lambda_client, name, {"level": "ERROR", "msg": "bad thing"})
        resp, _ = invoke(lambda_client, name, {"fail": True})
        assert resp.get("FunctionError")
        # Live: the counters change without a reload.
        wait(browser, lambda d: d.find_element(By.ID, "n-invocations").text == "10", what="invocations to 10")
        wait(browser, lambda d: d.find_element(By.ID, "n-errors").text == str(int(before_errors) + 1),
             what="errors to go up")
        envs = sum(int(text(browser, f"#env-{state}")) for state in ("warm", "frozen", "busy"))
        assert envs >= 1
        # The log tail, filtered with a JSON pattern.
        wait(browser, lambda d: "START RequestId" in d.find_element(By.ID, "log").text, what="the log")
        box = browser.find_element(By.ID, "filter")
        box.send_keys('{ $.level = "ERROR" }')
        wait(browser, lambda d: "bad thing" in d.find_element(By.ID, "log").text
             and "START RequestId" not in d.find_element(By.ID, "log").text, what="the filtered log")
        assert browser.find_element(By.ID, "log").text.count("bad thing") == 3
        time.sleep(2.5)
        shoot(browser, shots / "02-function.png")
    finally:
        lambda_client.delete_function(FunctionName=name)


def test_events_page_loads(browser, endpoint, shots):
    from selenium.webdriver.common.by import By

    browser.get(endpoint + "/lamina/ui/events")
    wait(browser, lambda d: "queued" in d.find_element(By.ID, "events").text, what="the async queue tiles")
    shoot(browser, shots / "03-events.png")


def test_udp_listener_packet_rates(browser, endpoint, lambda_client, shots):
    from selenium.webdriver.common.by import By

    name = unique_name("udpui")
    create_function(lambda_client, name, {"app.py": UDP_HANDLER})
    body = json.dumps({"Name": name, "Port": 0, "Destinations": [{"Type": "function", "Function": name}]}).encode()
    req = urllib.request.Request(endpoint + "/lamina/v1/udp/listeners", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        listener = json.loads(resp.read())
    port, lid = int(listener["Endpoint"].rsplit(":", 1)[1]), listener["Id"]
    stop = threading.Event()

    def send() -> None:   # a steady ~50 packets a second to the listener, loopback only
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not stop.wait(0.02):
                sock.sendto(b"ping", ("127.0.0.1", port))

    sender = threading.Thread(target=send, daemon=True)
    try:
        browser.get(endpoint + "/lamina/ui/udp")
        wait(browser, lambda d: name in d.find_element(By.ID, "udp").text, what="the listener row")
        sender.start()
        rate = f'[data-rate="udp:{lid}:packets_in"]'

        def rate_seen(d) -> bool:
            value = d.find_element(By.CSS_SELECTOR, rate).text
            return value not in ("–", "") and float(value) > 5

        wait(browser, rate_seen, 30, "a packet rate")
        shoot(browser, shots / "04-udp.png")
    finally:
        stop.set()
        if sender.is_alive():
            sender.join()
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/lamina/v1/udp/listeners/{lid}", method="DELETE"),
                               timeout=10).close()
        lambda_client.delete_function(FunctionName=name)


@needs_root
def test_microvm_suspended_from_the_ui(browser, lamina_server, tmp_path, shots):
    from selenium.webdriver.common.by import By

    mvm = client(lamina_server.endpoint)
    name = unique_name("uimvm")
    folder = write_app(tmp_path / "app", {"app.py": MVM_APP, "Dockerfile": MVM_DOCKERFILE})
    assert build(mvm, name, folder)["state"] == "CREATED"
    mid = mvm.run_microvm(imageIdentifier=name)["microvmId"]
    try:
        deadline = time.monotonic() + 60
        while mvm.get_microvm(microvmIdentifier=mid)["state"] != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        browser.get(lamina_server.endpoint + "/lamina/ui/microvms")
        row = f"#mvm-{mid}"
        wait(browser, lambda d: "RUNNING" in d.find_element(By.CSS_SELECTOR, row).text, what="the RUNNING row")
        shoot(browser, shots / "05-microvm-running.png")
        browser.find_element(By.CSS_SELECTOR, f'{row} button[data-action="suspend"]').click()
        wait(browser, lambda d: "SUSPENDED" in d.find_element(By.CSS_SELECTOR, row).text, 60, "SUSPENDED in the UI")
        assert mvm.get_microvm(microvmIdentifier=mid)["state"] == "SUSPENDED"
        shoot(browser, shots / "06-microvm-suspended.png")
        browser.find_element(By.CSS_SELECTOR, f'{row} button[data-action="resume"]').click()
        wait(browser, lambda d: "RUNNING" in d.find_element(By.CSS_SELECTOR, row).text, 60, "RUNNING again")
        assert mvm.get_microvm(microvmIdentifier=mid)["state"] == "RUNNING"
    finally:
        mvm.terminate_microvm(microvmIdentifier=mid)
        mvm.delete_microvm_image(imageIdentifier=name)


def test_actions_need_the_dashboard_header(endpoint):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(endpoint + "/lamina/ui/microvms/mvm-x/suspend", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 403


def test_sign_in_with_an_access_key_pair(browser, tmp_path, shots):
    """A server with access keys: the dashboard asks for a key pair, refuses a wrong secret, shows the live pages
    once signed in (htmx's polls carry the session cookie, which scripts cannot read) and signs out."""
    import boto3
    from selenium.webdriver.common.by import By

    from helpers import REGION, LaminaServer

    key, secret = "AKIDBROWSERSIGNIN", "browser-sign-in-secret"
    server = LaminaServer(data_dir=tmp_path / "data", log_path=tmp_path / "server.log",
                          extra_env={"LAMINA_CREDENTIALS": f"{key}:{secret}:000000000000"})
    server.start()
    try:
        lam = boto3.client("lambda", endpoint_url=server.endpoint, region_name=REGION, aws_access_key_id=key,
                           aws_secret_access_key=secret)
        name = unique_name("signin")
        create_function(lam, name, {"app.py": HANDLER})
        browser.delete_all_cookies()
        browser.get(server.endpoint + "/lamina/ui/functions/" + name)
        wait(browser, lambda d: d.find_elements(By.ID, "secret_access_key"), what="the sign-in page")
        browser.find_element(By.ID, "access_key_id").send_keys(key)
        browser.find_element(By.ID, "secret_access_key").send_keys("not-the-secret")
        browser.find_element(By.ID, "sign-in").click()
        wait(browser, lambda d: d.find_elements(By.ID, "login-error"), what="the refusal")
        assert "not valid" in text(browser, "#login-error")
        shoot(browser, shots / "06-sign-in-refused.png")

        browser.find_element(By.ID, "access_key_id").clear()
        browser.find_element(By.ID, "access_key_id").send_keys(key)
        browser.find_element(By.ID, "secret_access_key").send_keys(secret)
        browser.find_element(By.ID, "sign-in").click()
        # Back on the page asked for, signed in, and live: an invocation shows up without a reload.
        wait(browser, lambda d: d.find_elements(By.ID, "n-invocations"), what="the function page")
        assert text(browser, "#signed-in-as") == key
        assert browser.execute_script("return document.cookie") == ""   # HttpOnly
        invoke_ok(lam, name, {"msg": "signed in"})
        wait(browser, lambda d: d.find_element(By.ID, "n-invocations").text == "1", what="the live count")
        shoot(browser, shots / "07-signed-in.png")

        browser.find_element(By.ID, "sign-out").click()
        wait(browser, lambda d: d.find_elements(By.ID, "secret_access_key"), what="signed out")
        browser.get(server.endpoint + "/lamina/ui/")
        wait(browser, lambda d: d.find_elements(By.ID, "secret_access_key"), what="still signed out")
        lam.delete_function(FunctionName=name)
    finally:
        server.stop()
        server.kill_leftovers()
