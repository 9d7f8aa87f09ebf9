"""The API contract checks that need tools beyond Rust: `make test-api`.

Starts the release `inlet` with the real guest on a loopback port and a
fresh database, then:

1. opens `/docs` in headless Chromium and checks that the page lists every
   operation `/openapi.json` describes (so the page loads, renders the
   guest's document and fetches nothing from outside);
2. runs schemathesis from `/openapi.json` with every check on, with an admin
   API key (the server has `API_KEYS_FILE`), the webhook bodies signed by
   `hooks.py`: no 5xx, every status and body as documented, invalid input
   rejected and valid input accepted, and requests without the key refused.

The docs page must also offer Swagger UI's Authorize button and mark each
operation the document protects, and only those.

Exits non-zero on the first failure. Environment: CHROMIUM (default
`chromium`), SCHEMATHESIS_EXAMPLES to vary the run, and SCHEMATHESIS_SEED to
replay one: each run otherwise draws a fresh seed and prints it first.
"""

import html.parser
import json
import os
import pathlib
import random
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
SECRET = "schemathesis-secret"
VERIFY_TOKEN = "schemathesis-verify-token"
# An admin key, so that every protected operation is exercised, not only refused.
API_KEY = "inlet_" + secrets.token_urlsafe(32)
# Bounds on every wait: the server's start and each tool's whole run.
START_SECONDS = 30
BROWSER_SECONDS = 120
SCHEMATHESIS_SECONDS = 900


def main():
    with tempfile.TemporaryDirectory() as data, start_server(pathlib.Path(data)) as base:
        check_docs_page(base)
        run_schemathesis(base)
    print("test-api: the docs page and schemathesis found no failure")


class start_server:
    """The server as a context manager yielding its base URL."""

    def __init__(self, data):
        self.data = data

    def __enter__(self):
        env = dict(
            os.environ,
            WEBHOOK_SECRET=SECRET,
            WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
            DATABASE_URL=f"sqlite:///{self.data}/app.db",
            API_KEYS_FILE=str(self.data / "keys"),
            PORT="0",
            BIND_ADDRESS="127.0.0.1",
            LOG_LEVEL="INFO",
            GUEST_COMPONENT=str(ROOT / "target/wasm32-wasip2/release/inlet_guest.wasm"),
            # Forwarding configured, so its routes answer 200; to a port
            # nothing listens on, so every attempt fails and is retried.
            FORWARD_URL="http://127.0.0.1:9/inlet",
            FORWARD_SECRET="schemathesis-forward-secret",
        )
        (self.data / "keys").write_text(f"schemathesis admin {API_KEY}\n")
        self.log = open(self.data / "server.log", "w+")
        self.process = subprocess.Popen(
            [str(ROOT / "target/release/inlet"), "serve"], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        try:
            base = f"http://127.0.0.1:{self.port()}"
            wait_ready(base)
        except BaseException:
            self.__exit__()
            raise
        return base

    def port(self):
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"inlet exited with {self.process.returncode}:\n{self.logged()}")
            for line in self.logged().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line still being written
                if entry.get("msg") == "listening":
                    return entry["address"].rsplit(":", 1)[1]
            time.sleep(0.1)
        sys.exit(f"inlet did not say where it listens:\n{self.logged()}")

    def logged(self):
        self.log.seek(0)
        return self.log.read()

    def __exit__(self, *exc):
        if self.process.poll() is not None:
            self.log.close()
            return False
        self.process.terminate()
        self.process.wait(timeout=START_SECONDS)
        self.log.close()
        return False


def wait_ready(base):
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health/ready", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("inlet did not become ready")


class Operations(html.parser.HTMLParser):
    """The (method, path) of every operation block Swagger UI rendered, those
    it marks with a lock, and whether it offers the Authorize button."""

    def __init__(self):
        super().__init__()
        self.found = set()
        self.locked = set()
        self.authorize = False
        self.method = None
        self.operation = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        for name in classes:
            if name.startswith("opblock-") and name[len("opblock-"):] in ("get", "post", "delete"):
                self.method = name[len("opblock-"):]
        if "data-path" in attrs and self.method:
            self.operation = (self.method, attrs["data-path"])
            self.found.add(self.operation)
        if tag == "button" and "authorize" in classes:
            self.authorize = True
        if tag == "button" and "authorization__btn" in classes and self.operation:
            self.locked.add(self.operation)


def check_docs_page(base):
    with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as response:
        document = json.load(response)
    described = {(method, path) for path, item in document["paths"].items() for method in item}
    protected = {
        (method, path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if operation.get("security")
    }
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                os.environ.get("CHROMIUM", "chromium"),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                # Any address but the server's fails to resolve: the page
                # must render from what the host serves alone.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=20000",
                "--dump-dom",
                f"{base}/docs",
            ],
            capture_output=True,
            text=True,
            timeout=BROWSER_SECONDS,
            check=True,
        ).stdout
    parser = Operations()
    parser.feed(dom)
    if parser.found != described:
        sys.exit(f"/docs lists {sorted(parser.found)}, the document describes {sorted(described)}")
    if not parser.authorize or parser.locked != protected or not protected:
        sys.exit(f"/docs offers Authorize: {parser.authorize}, locks {sorted(parser.locked)}; protected: {sorted(protected)}")
    print(f"/docs lists all {len(described)} operations, {len(protected)} behind the Authorize button")


def run_schemathesis(base):
    seed = os.environ.get("SCHEMATHESIS_SEED") or str(random.randrange(2**32))
    print(f"schemathesis seed {seed} (replay with SCHEMATHESIS_SEED={seed} make test-api)", flush=True)
    command = [
        str(pathlib.Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        os.environ.get("SCHEMATHESIS_EXAMPLES", "300"),
        "--seed",
        seed,
        "--no-color",
        "--header",
        f"Authorization: Bearer {API_KEY}",
    ]
    env = dict(
        os.environ,
        WEBHOOK_SECRET=SECRET,
        WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
        SCHEMATHESIS_HOOKS="hooks",
        PYTHONPATH=str(HERE),
    )
    # Its cache of found failures goes under target/, not into the tree.
    result = subprocess.run(command, env=env, cwd=ROOT / "target", timeout=SCHEMATHESIS_SECONDS)
    if result.returncode != 0:
        sys.exit(f"schemathesis found failures (exit {result.returncode}) with seed {seed}")


if __name__ == "__main__":
    main()
