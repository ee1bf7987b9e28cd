"""Helpers shared by the compatibility scripts: free ports, a broker process, and the
`check` decorator that records one line per check."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

RESULTS = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for_port(port, deadline_s=30):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class Broker:
    """A `moldau serve` process with a fresh data directory. `listeners` maps listener
    names to ports; `props` are extra `name=value` properties."""

    def __init__(self, binary, listeners, props=(), env=None):
        self.dir = tempfile.mkdtemp(prefix="moldau-compat-")
        self.ports = dict(listeners)
        spec = ",".join(f"{name}://127.0.0.1:{port}" for name, port in self.ports.items())
        args = [binary, "serve", "-o", f"listeners={spec}",
                "-o", f"log.dirs={self.dir}/data", "-o", "http.listener=127.0.0.1:0"]
        for p in props:
            args += ["-o", p]
        self.log_path = os.path.join(self.dir, "broker.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log,
                                     env={**os.environ, **(env or {})})
        for port in self.ports.values():
            wait_for_port(port)

    def addr(self, listener="PLAINTEXT"):
        return f"127.0.0.1:{self.ports[listener]}"

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.log.close()
        return code

    def dump_log(self):
        sys.stdout.write(self.log_text()[-4000:])


def check(name, prepare=None):
    """Records one check: `ok` or `FAIL` with the traceback, and goes on. `prepare`, if
    given, runs first with the check's arguments (inside the same try)."""
    def wrap(fn):
        def run(*args):
            started = time.time()
            try:
                if prepare is not None:
                    prepare(*args)
                fn(*args)
                RESULTS.append((name, True))
                print(f"ok    {name} ({time.time() - started:.1f}s)", flush=True)
            except Exception:  # noqa: BLE001 - report every failure and go on
                RESULTS.append((name, False))
                print(f"FAIL  {name}", flush=True)
                traceback.print_exc()
        run.__name__ = fn.__name__
        return run
    return wrap


def summary():
    passed = sum(1 for _, ok in RESULTS if ok)
    failed = len(RESULTS) - passed
    print(f"{passed} passed, {failed} failed", flush=True)
    return failed
