#!/usr/bin/env python3
"""Benchmark friendli_image against a minimal hand-written ``urllib.request`` snippet.

Standard library only.  Starts its own local server speaking the Friendli image API
(in a separate process, so the client's CPU figures never include the server's), then
measures, each in fresh interpreter processes, and prints one table (median of several
runs, with the min-max spread in brackets):

1. import: wall time and peak RSS of ``python -c "import friendli_image"`` vs ``python -c "pass"``;
2. cold first call: a fresh process that imports, generates one 1 MiB PNG (``b64_json``)
   and saves it, vs the snippet doing the same work;
3. warm overhead: client CPU time per call over 1,000 calls with a small response, both
   clients in one process taking turns in batches of 100 (so load changes hit both);
4. big response: peak RSS growth while receiving and saving 4 images of 8 MiB each,
   as a multiple of the response body size;
5. threads: requests per second with 1, 8 and 32 threads against a server that takes
   200 ms per request, and the efficiency against linear scaling.

Where the official ``friendli`` SDK is importable, rows 1-4 get an SDK column too.

Usage::

    python3 benchmarks/bench_friendli_image.py            # full run (under a minute on 2 cores)
    python3 benchmarks/bench_friendli_image.py --quick    # smoke run (about 10 s)

Child interpreters run with ``-S`` (no ``site``), so whatever ``.pth`` files a
machine's site-packages carry cannot pre-load modules and hide import costs; pass
``--site`` to measure with ``site`` as users usually run.  Bytecode is cached in a
temporary ``PYTHONPYCACHEPREFIX`` (as after ``pip install``); ``--no-bytecode``
measures every import compiling from source.  Peak RSS is the
process's own high-water mark (``VmHWM`` on Linux; ``ru_maxrss`` would include the
RSS of the process that forked it).  Unix only (``os.wait4``).
"""

import argparse
import base64
import http.server
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
TOKEN = "bench-token-0123456789"
API_PATH = "/dedicated/v1/images/generations"
MIB = 1024 * 1024
SLOW_SECONDS = 0.2
THREAD_COUNTS = (1, 8, 32)
CHILD_TIMEOUT = 120.0  # seconds any one measured process may take

# The same prompt and options for every client.
PROMPT = "An orange Lamborghini driving down a hill road at night"
REQUEST = {"num_inference_steps": 10, "prompt": PROMPT, "response_format": "png"}

# ---------------------------------------------------------------------------
# The local server (runs in its own process: ``bench_friendli_image.py --serve``)
# ---------------------------------------------------------------------------


def make_png(size=None, width=1, height=1):
    """A valid RGB PNG with random pixels, stored uncompressed.

    With ``size``, the image is as large as fits and padded with a ``tEXt`` chunk
    to exactly ``size`` bytes.
    """

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if size is not None:
        width = 1024
        height = max(1, (size - 2048 - size // 8000) // (1 + 3 * width))
    raw = b"".join(b"\x00" + os.urandom(3 * width) for _ in range(height))
    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    body = chunk(b"IDAT", zlib.compress(raw, 0))
    tail = chunk(b"IEND", b"")
    if size is not None:
        pad = size - len(head) - len(body) - len(tail) - 12
        assert pad >= 8, pad
        body += chunk(b"tEXt", b"Comment\x00" + b"x" * (pad - 8))
    return head + body + tail


def _http_response(status, payload):
    """A whole HTTP/1.1 response, prebuilt once so the server spends little CPU per request."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Entity"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Request-Id: bench-{status}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + body


def build_responses():
    """Prebuilt responses by model (endpoint id), and the size of each 200 body."""

    def result(images):
        return {
            "data": [
                {"seed": i + 1, "response_format": "png", "b64_json": base64.b64encode(img).decode()}
                for i, img in enumerate(images)
            ]
        }

    small = result([make_png(width=1, height=1)])
    bodies = {
        "small": small,
        "slow": small,
        "png-1mib": result([make_png(size=MIB)]),
        "big-4x8mib": result([make_png(size=8 * MIB) for _ in range(4)]),
    }
    responses = {model: _http_response(200, body) for model, body in bodies.items()}
    sizes = {model: len(json.dumps(body).encode()) for model, body in bodies.items()}
    return responses, sizes


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 32 clients connect at once; the default backlog (5) would drop SYNs
    allow_reuse_address = True


class _Handler(http.server.BaseHTTPRequestHandler):
    """Checks what the real API checks (path, bearer token, JSON body) and answers by model."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    responses = {}  # set by serve()

    def log_message(self, *args):
        pass

    def _reply(self, response):
        self.close_connection = True
        self.wfile.write(response)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path != API_PATH:
            return self._reply(_http_response(404, {"detail": "Not Found"}))
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            return self._reply(_http_response(401, {"detail": "Invalid or missing token"}))
        try:
            body = json.loads(raw)
            model = body["model"].split(":")[0]
            assert isinstance(body["prompt"], str) and 1 <= body.get("num_inference_steps", 20) <= 50
        except (ValueError, KeyError, AttributeError, AssertionError, TypeError):
            return self._reply(_http_response(422, {"detail": [{"loc": ["body"], "msg": "invalid body"}]}))
        response = self.responses.get(model)
        if response is None:
            return self._reply(_http_response(404, {"detail": f"no endpoint {model!r}"}))
        if model == "slow":
            time.sleep(SLOW_SECONDS)
        self._reply(response)


def serve():
    """Server process: print ``{"port": ..., "sizes": ...}``, serve until stdin closes."""
    responses, sizes = build_responses()
    _Handler.responses = responses
    server = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    print(json.dumps({"port": server.server_address[1], "sizes": sizes}), flush=True)
    sys.stdin.read()  # the parent closes our stdin (or dies): stop
    server.shutdown()


class ServerProcess:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        info = json.loads(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{info['port']}"
        self.sizes = info["sizes"]

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------
# The clients, as code run in fresh interpreters
# ---------------------------------------------------------------------------

# A program gets its parameters (OUT, a scratch directory; REQUEST; MODEL; N; ...) as
# constants put before it by Runner.program(), finds the server and token in
# FRIENDLI_BASE_URL and FRIENDLI_TOKEN, and prints its results as one JSON line.

PASS = "pass"
IMPORT_FI = "import friendli_image"
IMPORT_SNIPPET = "import base64, json, urllib.request"
IMPORT_SDK = "import friendli"

# Peak RSS of this process since its exec.  Not ru_maxrss: on Linux a child's
# ru_maxrss starts at its parent's RSS when it forked, which would hide everything
# below the benchmark's own size.  VmHWM is the high-water mark of the new image.
if os.path.exists("/proc/self/status"):
    PEAK_RSS = (
        "def PEAK_RSS():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1]) * 1024\n"
    )
else:  # e.g. macOS: ru_maxrss in bytes
    PEAK_RSS = (
        "def PEAK_RSS():\n"
        "    import resource\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    )
PRINT_PEAK = PEAK_RSS + "print('PEAK_RSS', PEAK_RSS())\n"


def _code(text):
    return textwrap.dedent(text).strip() + "\n"


# The hand-written floor: POST JSON, read, json.loads.
SNIPPET_GENERATE = _code("""
    import base64, json, os, urllib.request
    def generate(model):
        req = urllib.request.Request(
            os.environ["FRIENDLI_BASE_URL"] + "/dedicated/v1/images/generations",
            data=json.dumps(dict(REQUEST, model=model)).encode(),
            headers={"Authorization": "Bearer " + os.environ["FRIENDLI_TOKEN"],
                     "Content-Type": "application/json", "Accept": "application/json"},
            method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())
""")

# One call each, in a fresh process: what a cold Lambda does.
COLD = {
    "friendli_image": _code("""
        import friendli_image
        res = friendli_image.generate(model=MODEL, **REQUEST)   # token and base URL from the environment
        res.data[0].save(OUT + "/cold.png")
    """),
    "snippet": SNIPPET_GENERATE + _code("""
        payload = generate(MODEL)
        with open(OUT + "/cold.png", "wb") as fh:
            fh.write(base64.b64decode(payload["data"][0]["b64_json"]))
    """),
    "friendli SDK": _code("""
        import base64, os
        from friendli import SyncFriendli
        with SyncFriendli(token=os.environ["FRIENDLI_TOKEN"], server_url=os.environ["FRIENDLI_BASE_URL"]) as f:
            res = f.dedicated.image.generate(model=MODEL, **REQUEST)
        with open(OUT + "/cold.png", "wb") as fh:
            fh.write(base64.b64decode(res.data[0].b64_json))
    """),
}

# Set up a client; CALL(model) is then one generate, SAVE(result) saves every image.  The
# snippet checks each image's base64 in CALL, as friendli_image does before it returns.
SETUP = {
    "friendli_image": _code("""
        import friendli_image
        client = friendli_image.Client()
        def CALL(model):
            return client.generate(model=model, **REQUEST)
        def SAVE(res):
            res.save_all(OUT)
    """),
    "snippet": SNIPPET_GENERATE + _code("""
        def CALL(model):
            payload = generate(model)
            for item in payload["data"]:
                base64.b64decode(item["b64_json"], validate=True)
            return payload
        def SAVE(payload):
            for i, item in enumerate(payload["data"]):
                with open(OUT + "/image-%d.png" % i, "wb") as fh:
                    fh.write(base64.b64decode(item["b64_json"]))
    """),
    "friendli SDK": _code("""
        import base64, os
        from friendli import SyncFriendli
        sdk = SyncFriendli(token=os.environ["FRIENDLI_TOKEN"], server_url=os.environ["FRIENDLI_BASE_URL"])
        def CALL(model):
            return sdk.dedicated.image.generate(model=model, **REQUEST)
        def SAVE(res):
            for i, item in enumerate(res.data):
                with open(OUT + "/image-%d.png" % i, "wb") as fh:
                    fh.write(base64.b64decode(item.b64_json))
    """),
}

# All clients in one process, taking turns in batches (the order rotating), so a
# change in the machine's load hits them alike; CPU is this process's only.
WARM = _code("""
    import time
    calls = {}
    for name, code in SETUPS.items():
        namespace = {"REQUEST": REQUEST, "OUT": OUT, "json": json, "sys": sys}
        exec(code, namespace)
        calls[name] = namespace["CALL"]
    for call in calls.values():
        for _ in range(WARMUP):
            call(MODEL)
    cpu = dict.fromkeys(calls, 0.0)
    names = list(calls)
    for batch in range(N // BATCH):
        for name in names[batch % len(names):] + names[:batch % len(names)]:
            call = calls[name]
            start = time.process_time()
            for _ in range(BATCH):
                call(MODEL)
            cpu[name] += time.process_time() - start
    print(json.dumps({name: total / (N // BATCH * BATCH) for name, total in cpu.items()}))
""")

BIG = PEAK_RSS + _code("""
    base = PEAK_RSS()
    SAVE(CALL(MODEL))
    print(json.dumps({"base": base, "peak": PEAK_RSS()}))
""")

THREADS = _code("""
    import threading, time
    CALL(MODEL)
    rates = {}
    for n in THREAD_COUNTS:
        barrier = threading.Barrier(n + 1)
        errors = []
        def worker():
            barrier.wait()
            try:
                for _ in range(PER_THREAD):
                    CALL(MODEL)
            except Exception as exc:
                errors.append(exc)
        threads = [threading.Thread(target=worker) for _ in range(n)]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        rates[n] = n * PER_THREAD / (time.perf_counter() - start)
        if errors:
            raise errors[0]
    print(json.dumps(rates))
""")

AUDIT = _code("""
    # What importing friendli_image does beyond defining names: environment reads, SSL
    # contexts, sockets, subprocesses, files opened (other than modules being imported).
    import os, ssl, sys
    for name in DEPENDENCIES:                 # its imports first: only its own work is audited
        try:
            __import__(name)
        except ImportError:
            pass
    seen = []
    environ_type = type(os.environ)
    original_getitem = environ_type.__getitem__
    def spy_getitem(self, key):
        seen.append("environment read " + str(key))
        return original_getitem(self, key)
    environ_type.__getitem__ = spy_getitem
    original_new = ssl.SSLContext.__new__
    def spy_new(cls, *args, **kwargs):
        seen.append("SSL context created")
        return original_new(cls, *args, **kwargs)
    ssl.SSLContext.__new__ = spy_new
    def hook(event, args):
        if event.startswith(("socket.", "subprocess.", "os.system", "urllib.Request")):
            seen.append(event)
        elif event == "open" and isinstance(args[0], str) and not args[0].endswith((".py", ".pyc", ".so")):
            seen.append("open " + args[0])
    sys.addaudithook(hook)
    import friendli_image
    environ_type.__getitem__ = original_getitem
    print(json.dumps(seen))
""")


class Runner:
    """Runs programs in fresh interpreters and measures them."""

    def __init__(self, args, server, scratch):
        self.server = server
        self.scratch = scratch
        self.flags = [] if args.site else ["-S"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FRIENDLI_"))}
        env.update(FRIENDLI_TOKEN=TOKEN, FRIENDLI_BASE_URL=server.url, PYTHONPATH=args.module_dir)
        if args.no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env["PYTHONPYCACHEPREFIX"] = os.path.join(scratch, "pycache")
        # Don't let a proxy setting send loopback traffic elsewhere.
        env = {k: v for k, v in env.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        self.env = env
        self.sdk_env = dict(env)
        if not args.site:  # the SDK lives in site-packages: put them on the path without running site
            import site

            dirs = site.getsitepackages() + [site.getusersitepackages()]
            self.sdk_env["PYTHONPATH"] = os.pathsep.join([args.module_dir] + dirs)

    def program(self, code, **constants):
        """The source of a program: ``code`` after its constants (bare import programs get none)."""
        if code in (PASS, IMPORT_FI, IMPORT_SNIPPET, IMPORT_SDK):
            return code + "\n"
        constants.setdefault("OUT", self.scratch)
        constants.setdefault("REQUEST", REQUEST)
        return "import json, sys\n" + "".join(f"{k} = {v!r}\n" for k, v in constants.items()) + code

    def run(self, code, sdk=False, extra_flags=(), peak=False, **constants):
        """Run one program; return (wall s, CPU s, peak RSS bytes or None, stdout, stderr).

        With ``peak``, the program's peak RSS is read after it has run.
        """
        source = self.program(code, **constants) + (PRINT_PEAK if peak else "")
        args = [sys.executable, *self.flags, *extra_flags, "-c", source]
        err_path = os.path.join(self.scratch, "stderr.txt")
        with open(err_path, "w+b") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=err, env=self.sdk_env if sdk else self.env, cwd=self.scratch
            )
            watchdog = threading.Timer(CHILD_TIMEOUT, proc.kill)  # a hung child must not hang the run
            watchdog.start()
            try:
                out = proc.stdout.read()
                proc.stdout.close()
                _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
            finally:
                watchdog.cancel()
            wall = time.perf_counter() - start
            proc.returncode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{stderr[-3000:]}")
        text = out.decode()
        peaks = [int(line.split()[1]) for line in text.splitlines() if line.startswith("PEAK_RSS ")]
        return wall, usage.ru_utime + usage.ru_stime, peaks[-1] if peaks else None, text, stderr

    def result(self, code, sdk=False, **constants):
        """Run one program and return the JSON it printed last."""
        return json.loads(self.run(code, sdk=sdk, **constants)[3].strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


class Stat:
    """Median and range of repeated measurements."""

    def __init__(self, values):
        self.values = list(values)
        self.median = statistics.median(self.values)
        self.low = min(self.values)
        self.high = max(self.values)

    def show(self, scale=1.0, digits=0):
        def fmt(v):
            return f"{v * scale:,.{digits}f}"

        return f"{fmt(self.median)} [{fmt(self.low)}-{fmt(self.high)}]"


def interleaved(runs, variants, measure):
    """Measure each variant ``runs`` times, round-robin, so load changes hit all alike."""
    values = {name: [] for name in variants}
    for _ in range(runs):
        for name in variants:
            values[name].append(measure(name))
    return values


def measure_import(runner, runs, sdk):
    """Per program: (wall time, peak RSS) of a fresh interpreter that imports and exits."""
    programs = {"pass": PASS, "friendli_image": IMPORT_FI, "snippet": IMPORT_SNIPPET}
    if sdk:
        programs["friendli SDK"] = IMPORT_SDK
    for name, code in programs.items():  # warm the bytecode cache and the page cache
        runner.run(code, sdk=name == "friendli SDK")
    raw = interleaved(
        runs, programs, lambda name: runner.run(programs[name], sdk=name == "friendli SDK", peak=True)[:3]
    )
    return {name: (Stat(r[0] for r in rs), Stat(r[2] for r in rs)) for name, rs in raw.items()}


def measure_cold(runner, runs, sdk):
    """Per client: (wall time, CPU time) of a fresh process making one call and saving the image."""
    variants = ["friendli_image", "snippet"] + (["friendli SDK"] if sdk else [])
    for name in variants:
        runner.run(COLD[name], sdk=name == "friendli SDK", MODEL="png-1mib")
    raw = interleaved(
        runs, variants, lambda name: runner.run(COLD[name], sdk=name == "friendli SDK", MODEL="png-1mib")[:3]
    )
    return {name: (Stat(r[0] for r in rs), Stat(r[1] for r in rs)) for name, rs in raw.items()}


def measure_warm(runner, runs, calls, sdk):
    """Per client: CPU seconds per call, one value per process."""
    variants = ["friendli_image", "snippet"] + (["friendli SDK"] if sdk else [])
    setups = {name: SETUP[name] for name in variants}
    results = [
        runner.result(WARM, sdk=sdk, SETUPS=setups, MODEL="small", N=calls, BATCH=100, WARMUP=20)
        for _ in range(runs)
    ]
    return {name: Stat(r[name] for r in results) for name in variants}


def measure_big(runner, runs, sdk):
    """Per client: peak RSS growth (bytes) over the call and the saves, in a fresh process."""
    variants = ["friendli_image", "snippet"] + (["friendli SDK"] if sdk else [])
    raw = interleaved(
        runs,
        variants,
        lambda name: runner.result(SETUP[name] + BIG, sdk=name == "friendli SDK", MODEL="big-4x8mib"),
    )
    return {name: Stat(r["peak"] - r["base"] for r in rs) for name, rs in raw.items()}


def measure_threads(runner, runs, per_thread):
    """Per client and thread count: requests per second, one client shared by all threads."""
    variants = ["friendli_image", "snippet"]
    raw = interleaved(
        runs,
        variants,
        lambda name: runner.result(
            SETUP[name] + THREADS, MODEL="slow", PER_THREAD=per_thread, THREAD_COUNTS=THREAD_COUNTS
        ),
    )
    return {name: {n: Stat(r[str(n)] for r in rs) for n in THREAD_COUNTS} for name, rs in raw.items()}


def import_audit(runner):
    """What ``import friendli_image`` costs beyond the snippet's imports, and what it does.

    Returns (the modules it loads that ``import base64, json, urllib.request`` does not;
    those of them it imports itself, as (cumulative ms, name), costliest first; what
    the import did beyond defining names, e.g. "environment read FRIENDLI_TOKEN").
    """
    listing = "import sys\nbefore = set(sys.modules)\n%s\nprint(sorted(set(sys.modules) - before))"
    snippet = set(json.loads(runner.run(listing % "import base64, json, urllib.request")[3].replace("'", '"')))
    mine = json.loads(runner.run(listing % "import friendli_image")[3].replace("'", '"'))
    extra = sorted(set(mine) - snippet - {"friendli_image"})
    # -X importtime: "import time: self | cumulative | name", two spaces of indent per level;
    # friendli_image is at level 0, the modules it imports itself at level 1.
    stderr = runner.run(IMPORT_FI, extra_flags=["-X", "importtime"])[4]
    cumulative, direct = {}, set()
    for line in stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].strip()
            cumulative[name] = int(parts[1]) / 1000.0
            if len(parts[2]) - len(parts[2].lstrip()) == 3:  # one space after "|", then level 1
                direct.add(name)
    top = sorted(((cumulative[m], m) for m in extra if m in direct), reverse=True)
    dependencies = [m for m in mine if m != "friendli_image"]
    work = runner.result(AUDIT, DEPENDENCIES=dependencies)
    return extra, top, work


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and calls: a smoke run of a few seconds")
    parser.add_argument("--rows", default="1,2,3,4,5", help="which rows to measure, e.g. 2,3 (default: all)")
    parser.add_argument(
        "--module-dir", default=PROJECT, help="folder of the friendli_image.py to measure (default: the project's)"
    )
    parser.add_argument("--site", action="store_true", help="run children with site (and its .pth files)")
    parser.add_argument("--no-bytecode", action="store_true", help="no .pyc cache: every import compiles from source")
    parser.add_argument("--no-sdk", action="store_true", help="leave out the official SDK even when it is installed")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.module_dir = os.path.abspath(args.module_dir)
    if not args.serve and not os.path.isfile(os.path.join(args.module_dir, "friendli_image.py")):
        parser.error(f"no friendli_image.py in {args.module_dir}")
    try:
        args.rows = {int(r) for r in args.rows.split(",")}
    except ValueError:
        parser.error("--rows takes numbers from 1 to 5, separated by commas")
    if not args.rows <= {1, 2, 3, 4, 5}:
        parser.error("--rows takes numbers from 1 to 5, separated by commas")
    return args


class Table:
    def __init__(self, sdk):
        self.sdk = sdk
        self.columns = ["#", "measurement", "friendli_image", "baseline", "ratio", "target", "result"]
        if sdk:
            self.columns.insert(4, "friendli SDK")
        self.rows = []

    def add(self, num, what, mine, base, ratio, target="", ok=None, sdk_cell="n/a"):
        cells = [num, what, mine, base, ratio, target, "" if ok is None else ("PASS" if ok else "MISS")]
        if self.sdk:
            cells.insert(4, sdk_cell)
        self.rows.append(cells)

    def render(self):
        """A Markdown table, padded to line up in a terminal too."""
        rows = [self.columns] + self.rows
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(self.columns))]

        def line(cells):
            return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

        return "\n".join([line(self.columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                         + [line(r) for r in self.rows])


def main(argv=None):
    args = parse_args(argv)
    if args.serve:
        return serve()
    if args.quick:
        import_runs, cold_runs, warm_runs, warm_calls, big_runs, thread_runs, per_thread = 5, 3, 2, 300, 2, 1, 2
    else:
        import_runs, cold_runs, warm_runs, warm_calls, big_runs, thread_runs, per_thread = 21, 15, 7, 1000, 5, 3, 5

    started = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    scratch = tempfile.mkdtemp(prefix="bench-friendli-image-")
    server = ServerProcess()
    results = {}
    try:
        runner = Runner(args, server, scratch)
        sdk = False
        if not args.no_sdk:
            try:
                runner.run(IMPORT_SDK, sdk=True)
                sdk = True
            except RuntimeError:
                pass
        if 1 in args.rows:
            results[1] = measure_import(runner, import_runs, sdk), import_audit(runner)
        if 2 in args.rows:
            results[2] = measure_cold(runner, cold_runs, sdk)
        if 3 in args.rows:
            results[3] = measure_warm(runner, warm_runs, warm_calls, sdk)
        if 4 in args.rows:
            results[4] = measure_big(runner, big_runs, sdk)
        if 5 in args.rows:
            results[5] = measure_threads(runner, thread_runs, per_thread)
    finally:
        server.close()
        shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.perf_counter() - started

    table = Table(sdk)
    notes = []
    if 1 in results:
        imports, (extra, top, work) = results[1]
        (fi_wall, fi_rss), (pass_wall, pass_rss) = imports["friendli_image"], imports["pass"]
        snip_wall, snip_rss = imports["snippet"]
        sdk_import = imports.get("friendli SDK")
        table.add(1, "import: process wall ms", fi_wall.show(1e3), "pass: " + pass_wall.show(1e3),
                  f"+{(fi_wall.median - pass_wall.median) * 1e3:.0f} ms", "no work at import", not work,
                  sdk_import[0].show(1e3) if sdk_import else "n/a")
        table.add(1, "import: peak RSS MiB", fi_rss.show(1 / MIB, 1), "pass: " + pass_rss.show(1 / MIB, 1),
                  f"+{(fi_rss.median - pass_rss.median) / MIB:.1f} MiB", "", None,
                  sdk_import[1].show(1 / MIB, 1) if sdk_import else "n/a")
        table.add(1, "import vs the snippet's own imports: wall ms", fi_wall.show(1e3),
                  "snippet: " + snip_wall.show(1e3), f"+{(fi_wall.median - snip_wall.median) * 1e3:.0f} ms",
                  "only modules generate needs (see list)")
        notes.append(f"import audit: importing did {'nothing but define names' if not work else ', '.join(work)} "
                     "(no environment read, SSL context, socket, subprocess or file opened).")
        notes.append(f"modules `import friendli_image` loads beyond `import base64, json, urllib.request` "
                     f"({len(extra)}): " + ", ".join(extra))
        notes.append("  the costliest of them (cumulative ms under -X importtime, which inflates): "
                     + ", ".join(f"{m} {ms:.1f}" for ms, m in top[:8]))
    if 2 in results:
        cold = results[2]
        (fw, fc), (sw, sc) = cold["friendli_image"], cold["snippet"]
        table.add(2, "cold first call (1 MiB PNG): process wall ms", fw.show(1e3), "snippet: " + sw.show(1e3),
                  f"{fw.median / sw.median:.2f}x", "<= 1.3x", fw.median <= 1.3 * sw.median,
                  cold["friendli SDK"][0].show(1e3) if sdk else "n/a")
        table.add(2, "cold first call (1 MiB PNG): process CPU ms", fc.show(1e3), "snippet: " + sc.show(1e3),
                  f"{fc.median / sc.median:.2f}x", "", None, cold["friendli SDK"][1].show(1e3) if sdk else "n/a")
    if 3 in results:
        warm = results[3]
        fw, sw = warm["friendli_image"], warm["snippet"]
        table.add(3, f"warm: client CPU us/call ({warm_calls} calls)", fw.show(1e6), "snippet: " + sw.show(1e6),
                  f"{fw.median / sw.median:.2f}x", "<= 1.2x", fw.median <= 1.2 * sw.median,
                  warm["friendli SDK"].show(1e6) if sdk else "n/a")
    if 4 in results:
        big = results[4]
        body = server.sizes["big-4x8mib"]
        fb, sb = big["friendli_image"], big["snippet"]
        sdk_big = big.get("friendli SDK")
        table.add(4, f"big response (4 x 8 MiB, body {body / MIB:.1f} MiB): peak RSS growth MiB",
                  fb.show(1 / MIB, 1), "snippet: " + sb.show(1 / MIB, 1),
                  f"{fb.median / body:.2f}x body (snippet {sb.median / body:.2f}x)", "<= 2.5x body",
                  fb.median <= 2.5 * body,
                  f"{sdk_big.show(1 / MIB, 1)} ({sdk_big.median / body:.2f}x)" if sdk_big else "n/a")
    if 5 in results:
        rates = results[5]
        fi_rates, sn_rates = rates["friendli_image"], rates["snippet"]
        for n in THREAD_COUNTS:
            eff = fi_rates[n].median / (n * fi_rates[1].median)
            sn_eff = sn_rates[n].median / (n * sn_rates[1].median)
            table.add(5, f"threads: req/s with {n} (server 200 ms/request)", fi_rates[n].show(1, 1),
                      "snippet: " + sn_rates[n].show(1, 1),
                      f"{eff:.2f} of linear (snippet {sn_eff:.2f})" if n > 1 else f"ideal {1 / SLOW_SECONDS:.1f}",
                      ">= 0.8 of linear" if n == 32 else "", eff >= 0.8 if n == 32 else None)

    print(table.render())
    print()
    print("Median [min-max] over runs (import %d, cold %d, warm %d processes, big %d, threads %d); "
          "ratios are of medians." % (import_runs, cold_runs, warm_runs, big_runs, thread_runs))
    print("baseline: `python -c pass` (row 1); a minimal urllib.request snippet doing the same work: "
          "POST JSON, read, json.loads, b64decode, write (rows 1-5).")
    if not sdk and not args.no_sdk:
        print("friendli SDK: not importable here, so it has no column.")
    for note in notes:
        print(note)
    print(f"machine: {os.cpu_count()} CPUs, {platform.machine()} {platform.system()}, "
          f"{platform.python_implementation()} {platform.python_version()}; load average {load:.2f} at start; "
          f"children {'with' if args.site else 'without'} site, "
          f"{'compiling from source' if args.no_bytecode else 'bytecode cached'}; took {elapsed:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
