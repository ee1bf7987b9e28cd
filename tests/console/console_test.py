#!/usr/bin/env python3
"""Drives the web console of a real `moldau` binary in headless Chromium (Playwright).

Usage: console_test.py PATH_TO_MOLDAU_BINARY
       console_test.py --url http://127.0.0.1:8080   (an already-running server; no broker
                                                      is started or stopped)

Starts the broker with a fresh data directory and OS-chosen ports, reads the HTTP address
from its 'Moldau broker started' log line, then walks the console: overview, create a
topic, produce a record and find it in the record browser, the TOPIC_ALREADY_EXISTS error,
a consumer group (made with the moldau CLI) with its committed offset and lag on the
group pages. Prints one line per step and a closing PASS/FAIL line; on failure saves a
screenshot and exits non-zero. Every wait is bounded, so a failure never hangs.

Needs the `playwright` pip package and Chromium at $CHROMIUM (default /usr/bin/chromium);
`playwright install` is not used.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
import uuid

from playwright.sync_api import expect, sync_playwright

TIMEOUT_MS = 15_000
STARTUP_TIMEOUT_S = 30
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
HTTP_ADDR = re.compile(r"http=([0-9.]+:[0-9]+)")
KAFKA_ADDR = re.compile(r"listener=([0-9.]+:[0-9]+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Broker:
    """`moldau serve` on OS-chosen ports; stderr is drained into broker.log by a thread."""

    def __init__(self, binary, workdir):
        self.log_path = os.path.join(workdir, "broker.log")
        self.http_addr = None
        self.kafka_addr = None
        self.binary = binary
        self.started = threading.Event()
        env = dict(os.environ, MOLDAU_LOG="info", NO_COLOR="1")
        self.proc = subprocess.Popen(
            [binary, "serve", "-o", f"log.dirs={workdir}/data",
             "-o", "listeners=PLAINTEXT://127.0.0.1:0",
             "-o", "http.listener=127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env, text=True, errors="replace")
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()
        deadline = time.time() + STARTUP_TIMEOUT_S
        while not self.started.wait(0.1):
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode} before starting")
            if time.time() > deadline:
                raise RuntimeError("no 'Moldau broker started' line with an http= address "
                                   f"within {STARTUP_TIMEOUT_S}s")

    def _drain(self):
        # Reads until EOF so the pipe never fills, whatever the log level.
        with open(self.log_path, "w") as log:
            for line in self.proc.stderr:
                log.write(line)
                log.flush()
                if not self.started.is_set() and "Moldau broker started" in line:
                    plain = ANSI.sub("", line)
                    m = HTTP_ADDR.search(plain)
                    k = KAFKA_ADDR.search(plain)
                    if m and k:
                        self.http_addr = m.group(1)
                        self.kafka_addr = k.group(1)
                        self.started.set()

    def stop(self):
        """SIGTERM, then the exit code (None if it had to be killed after 30 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        self.drain.join(timeout=5)
        return code

    def dump_log(self):
        with open(self.log_path, errors="replace") as f:
            sys.stdout.write(f.read()[-4000:])


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as res:
        return json.load(res)


class Steps:
    """Runs steps in order, printing one line each; stops at the first failure."""

    def __init__(self):
        self.results = []

    def run(self, name, fn):
        started = time.time()
        try:
            fn()
        except Exception:  # noqa: BLE001 - report the failure with its traceback
            self.results.append((name, False))
            print(f"FAIL  {name}", flush=True)
            traceback.print_exc()
            raise
        self.results.append((name, True))
        print(f"ok    {name} ({time.time() - started:.1f}s)", flush=True)


def walk_console(page, base, steps, broker=None):
    """The console checks proper; `page` is a fresh page, `base` like http://host:port;
    with `broker` (not with --url) a consumer group is made with the moldau CLI and its
    lag is checked on the group page."""
    topic = "console-" + uuid.uuid4().hex[:8]
    page_errors = []
    page.on("pageerror", lambda e: page_errors.append(str(e)))

    def overview():
        cluster_id = get_json(f"{base}/api/cluster")["cluster_id"]
        page.goto(f"{base}/")
        expect(page.locator("#cluster-id")).to_have_text(cluster_id)
        expect(page.locator("main")).to_contain_text(cluster_id)
        expect(page.locator("#brokers-table tbody tr").first).to_be_visible()
        # One node: it is the live broker, the active controller and the only voter.
        expect(page.locator("#brokers-table tbody tr").first).to_contain_text("live")
        expect(page.locator("#controller-id")).to_have_text("1")
        expect(page.locator("#quorum")).to_contain_text("leader 1, epoch")

    def create_topic():
        page.click("nav a[data-nav=topics]")
        form = page.locator("#create-topic-form")
        expect(form).to_be_visible()
        form.locator("[name=name]").fill(topic)
        form.locator("[name=partitions]").fill("2")
        form.locator("[name=replication_factor]").fill("1")
        form.locator("[name=configs]").fill("cleanup.policy=delete\n")
        form.locator("button[type=submit]").click()
        page.wait_for_url(re.compile(r"#/topics/" + re.escape(topic) + "$"), timeout=TIMEOUT_MS)
        expect(page.locator("#topic-name")).to_have_text(topic)
        rows = page.locator("#partitions-table tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(0).locator("td").first).to_have_text("0")
        expect(rows.nth(1).locator("td").first).to_have_text("1")

    def produce_and_browse():
        form = page.locator("#produce-form")
        form.locator("[name=partition]").select_option("1")
        form.locator("[name=key]").fill("k1")
        form.locator("[name=value]").fill('{"hello": "console"}')
        form.locator("[name=headers]").fill("h1=v1")
        form.locator("button[type=submit]").click()
        expect(page.locator("#produce-result")).to_contain_text("partition 1 at offset 0")
        # The browser follows the produce to partition 1 and reloads by itself.
        expect(page.locator("#browse-form [name=partition]")).to_have_value("1")
        row = page.locator("#records-table tbody tr", has_text="k1")
        expect(row).to_have_count(1)
        expect(row).to_have_attribute("data-offset", "0")
        pre = row.locator("td.value pre")
        expect(pre).to_be_visible()
        text = pre.inner_text()
        assert json.loads(text) == {"hello": "console"}, text
        assert "\n" in text, f"JSON value is not pretty-printed: {text!r}"
        expect(row.locator("td.headers")).to_contain_text("h1=v1")
        expect(row.locator("td.headers")).to_be_visible()
        # The same record through the "latest" mode.
        browse = page.locator("#browse-form")
        browse.locator("[name=mode]").select_option("latest")
        browse.locator("[name=limit]").fill("1")
        browse.locator("button[type=submit]").click()
        expect(page.locator("#records-table tbody tr[data-offset='0']")).to_contain_text("k1")

    def duplicate_topic_error():
        page.click("nav a[data-nav=topics]")
        expect(page.locator("#topics-table")).to_contain_text(topic)
        form = page.locator("#create-topic-form")
        form.locator("[name=name]").fill(topic)
        form.locator("[name=partitions]").fill("2")
        form.locator("button[type=submit]").click()
        expect(form.locator(".error")).to_contain_text("TOPIC_ALREADY_EXISTS")
        assert page.url.endswith("#/topics"), page.url

    def groups():
        group = "console-readers"
        if broker is not None:
            # A group that read the one record on partition 1 and committed, then one
            # more record behind it: lag 1.
            subprocess.run([broker.binary, "-b", broker.kafka_addr, "consume", topic,
                            "--group", group, "--from-beginning", "--max-messages", "1"],
                           check=True, timeout=60, stdout=subprocess.DEVNULL)
            req = urllib.request.Request(
                f"{base}/api/topics/{topic}/records", method="POST",
                data=json.dumps({"records": [{"value": "second", "partition": 1}]}).encode(),
                headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=TIMEOUT_MS / 1000).read()
        page.click("nav a[data-nav=groups]")
        expect(page.locator("#groups-table")).to_be_attached()
        expect(page.locator("main .error")).to_have_count(0)
        if broker is None:
            return
        page.locator("#groups-table a", has_text=group).click()
        expect(page.locator("#group-id")).to_have_text(group)
        expect(page.locator("#group-total-lag")).to_have_text("1")
        row = page.locator("#offsets-table tbody tr", has_text=topic)
        expect(row).to_have_count(1)
        cells = [c.strip() for c in row.locator("td").all_inner_texts()]
        assert cells == [topic, "1", "1", "2", "1"], cells

    def no_script_errors():
        assert not page_errors, page_errors

    steps.run("overview shows the cluster id and brokers", overview)
    steps.run(f"create topic {topic} with 2 partitions from the form", create_topic)
    steps.run("produce a JSON record and see it in the record browser", produce_and_browse)
    steps.run("creating it again shows TOPIC_ALREADY_EXISTS", duplicate_topic_error)
    steps.run("a consumer group's committed offset and lag on the groups pages", groups)
    steps.run("no uncaught script errors", no_script_errors)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", nargs="?", help="path to the moldau binary")
    parser.add_argument("--url", help="test an already-running server instead of starting one")
    args = parser.parse_args()
    if not args.binary and not args.url:
        parser.error("give the moldau binary or --url")

    workdir = tempfile.mkdtemp(prefix="moldau-console-")
    steps = Steps()
    broker = None
    failed = False
    try:
        if args.url:
            base = args.url.rstrip("/")
        else:
            broker = Broker(args.binary, workdir)
            base = f"http://{broker.http_addr}"
        print(f"console at {base}", flush=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                args=CHROMIUM_ARGS, timeout=TIMEOUT_MS * 2)
            try:
                page = browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                expect.set_options(timeout=TIMEOUT_MS)
                try:
                    walk_console(page, base, steps, broker)
                except Exception:  # noqa: BLE001 - already reported by Steps
                    failed = True
                    shot = os.path.join(workdir, "console-failure.png")
                    try:
                        page.screenshot(path=shot, full_page=True, timeout=TIMEOUT_MS)
                        print(f"screenshot: {shot}")
                    except Exception as e:  # noqa: BLE001 - the screenshot is best effort
                        print(f"no screenshot: {e}")
            finally:
                browser.close()
    except Exception:  # noqa: BLE001 - startup failures (broker, browser)
        failed = True
        traceback.print_exc()
    finally:
        if broker is not None:
            code = broker.stop()
            ok = code == 0
            steps.results.append(("broker exits 0 on SIGTERM", ok))
            print(("ok    " if ok else "FAIL  ") + f"broker exits 0 on SIGTERM (exit {code})")
            if failed or not ok:
                broker.dump_log()
            failed = failed or not ok

    passed = sum(1 for _, ok in steps.results if ok)
    print(f"console: {'FAIL' if failed else 'PASS'} ({passed} passed, "
          f"{len(steps.results) - passed} failed)")
    if failed:
        print(f"kept {workdir} for inspection")
        sys.exit(1)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
