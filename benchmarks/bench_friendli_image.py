#!/usr/bin/env python3
"""Benchmark friendli_image against a minimal hand-written ``urllib.request`` snippet.

Standard library only.  Starts its own local server speaking the Friendli image API
(in a separate process, so the client's CPU figures never include the server's), then
measures, each in fresh interpreter processes, and prints one table:

1. import: wall time and peak RSS of ``python -c "import friendli_image"`` vs ``python -c "pass"``
   and vs the snippet's own imports;
2. cold first call: a fresh process that imports, generates one 1 MiB PNG (``b64_json``)
   and saves it, vs the snippet doing the same work; twice: with the module's bytecode
   cached (as after ``pip install``), and with no bytecode for the module, as in a
   read-only Lambda zip built without ``__pycache__`` (the standard library keeps its own);
3. warm overhead: client CPU time per call over 1,000 calls with a small response, both
   clients in one process taking turns in batches of 100;
4. big response: peak RSS growth while receiving and saving 4 images of 8 MiB each,
   against the snippet's, and as a multiple of the response body size;
5. threads: requests per second with 1, 8 and 32 threads against a server that takes
   200 ms per request, and the efficiency against linear scaling.

Where the official ``friendli`` SDK is importable, rows 1-4 get an SDK column too.

Usage::

    python3 benchmarks/bench_friendli_image.py              # full run (about 40 s on 2 cores)
    python3 benchmarks/bench_friendli_image.py --quick      # smoke run (about 10 s)
    python3 benchmarks/bench_friendli_image.py --rows 2,3   # only some rows
    python3 benchmarks/bench_friendli_image.py --module-dir DIR   # measure another friendli_image.py

Comparisons are paired: the two variants run back to back in alternating order (A B,
B A, A B, ...; in row 3, batches of calls within each process), the ratio is taken
for each adjacent pair, and the table quotes the median of those ratios with their
min-max spread, so drift in the machine's speed cancels instead of landing on one side.
Other cells are the median [min-max] over runs.

Every child interpreter runs with ``-S`` (no ``site``), so whatever ``.pth`` files a
machine's site-packages carry cannot pre-load modules and hide import costs (``--site``
measures with ``site``, as users usually run), and with ``-B``, so no run writes bytecode.
The module under test is copied into the scratch directory: one copy compiled once
(bytecode cached), and for the no-bytecode case a fresh copy per run, without
``__pycache__``.  The standard library loads from its own cached bytecode.  Before
measuring, an audit hook in a child checks all of that (which ``.py`` files are read,
i.e. compiled); after every no-bytecode run, the script checks that no bytecode was left.
Peak RSS is the process's own high-water mark (``VmHWM`` on Linux; ``ru_maxrss`` would
include the RSS of the process that forked it).  Unix only (``os.wait4``).
"""

import argparse
import base64
import contextlib
import http.server
import json
import operator
import os
import platform
import py_compile
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
            [sys.executable, "-S", os.path.abspath(__file__), "--serve"],
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
        import os, friendli_image
        client = friendli_image.Client(os.environ["FRIENDLI_TOKEN"], base_url=os.environ["FRIENDLI_BASE_URL"])
        res = client.generate(model=MODEL, **REQUEST)
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
        import os, friendli_image
        client = friendli_image.Client(os.environ["FRIENDLI_TOKEN"], base_url=os.environ["FRIENDLI_BASE_URL"])
        def CALL(model):
            return client.generate(model=model, **REQUEST)
        def SAVE(res):
            for i, image in enumerate(res.data):
                image.save(OUT + "/image-%d.png" % i)
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

# All clients in one process, taking turns in batches, the order reversed every other
# round (A B, B A, ...) so that neighbours run back to back and a change in the machine's
# load hits them alike; prints each client's CPU seconds per batch (this process's only).
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
    cpu = {name: [] for name in calls}
    names = list(calls)
    for batch in range(N // BATCH):
        for name in names if batch % 2 == 0 else names[::-1]:
            call = calls[name]
            start = time.process_time()
            for _ in range(BATCH):
                call(MODEL)
            cpu[name].append(time.process_time() - start)
    print(json.dumps(cpu))
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


# Prepended to a program (before it imports anything): records which ``.py`` files it
# reads, i.e. compiles (a module loaded from valid bytecode has only its ``.pyc`` opened).
BYTECODE_CHECK = _code("""
    import sys
    SOURCES_READ = []
    def _audit(event, args):
        if event == "open" and isinstance(args[0], str) and args[0].endswith(".py"):
            SOURCES_READ.append(args[0])
    sys.addaudithook(_audit)
""")
BYTECODE_REPORT = _code("""
    print(json.dumps({"sources_read": SOURCES_READ, "no_site": sys.flags.no_site,
                      "dont_write_bytecode": sys.flags.dont_write_bytecode}))
""")


def pyc_path(folder):
    """Where this interpreter keeps the bytecode of ``folder/friendli_image.py``."""
    return os.path.join(folder, "__pycache__", f"friendli_image.{sys.implementation.cache_tag}.pyc")


class Runner:
    """Runs programs in fresh interpreters and measures them.

    Children import friendli_image from a copy in the scratch directory whose bytecode
    is compiled once (as ``pip install`` does), or, given ``module_dir``, from a copy
    made by ``fresh_module()``, which has none.  They run with ``-B``, so none writes
    bytecode, and with ``-S`` unless ``--site``.
    """

    def __init__(self, args, server, scratch):
        self.server = server
        self.scratch = scratch
        self.site = args.site
        self.flags = ([] if args.site else ["-S"]) + ["-B"]
        self.source = os.path.join(args.module_dir, "friendli_image.py")
        self.module_dir = os.path.join(scratch, "module")
        self.fresh_count = 0
        os.mkdir(self.module_dir)
        copy = os.path.join(self.module_dir, "friendli_image.py")
        shutil.copyfile(self.source, copy)
        py_compile.compile(copy, cfile=pyc_path(self.module_dir), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FRIENDLI_"))}
        env.update(FRIENDLI_TOKEN=TOKEN, FRIENDLI_BASE_URL=server.url)
        # Don't let a proxy setting send loopback traffic elsewhere.
        env = {k: v for k, v in env.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        self.env = env
        self.sdk_path = []
        if not args.site:  # the SDK lives in site-packages: put them on the path without running site
            import site

            self.sdk_path = site.getsitepackages() + [site.getusersitepackages()]

    @contextlib.contextmanager
    def fresh_module(self):
        """A new folder holding only a copy of friendli_image.py, for one run: no bytecode to load."""
        self.fresh_count += 1
        folder = os.path.join(self.scratch, f"no-bytecode-{self.fresh_count}")
        os.mkdir(folder)
        shutil.copyfile(self.source, os.path.join(folder, "friendli_image.py"))
        try:
            yield folder
            left = sorted(os.listdir(folder))
            if left != ["friendli_image.py"] or os.path.exists(pyc_path(folder)):
                raise RuntimeError(f"a no-bytecode run left bytecode behind: {left}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def check_bytecode(self, sdk):
        """Check that children load what the measurements assume, or raise; return a note.

        With the module's bytecode cached, a cold call compiles nothing; from a fresh
        copy, it compiles friendli_image.py and nothing else (the standard library keeps
        its bytecode).  Should the interpreter's own standard library have no usable
        bytecode (a stripped install), children get a cache in the scratch directory,
        filled once, instead.
        """

        def problems():
            found = []
            runs = [("friendli_image", self.module_dir, []), ("snippet", self.module_dir, [])]
            with self.fresh_module() as folder:
                runs.append(("friendli_image", folder, [os.path.join(folder, "friendli_image.py")]))
                for name, module_dir, expected in runs:
                    report = self.result(COLD[name] + BYTECODE_REPORT, prelude=BYTECODE_CHECK,
                                         module_dir=module_dir, MODEL="png-1mib")
                    if report["no_site"] != (not self.site) or not report["dont_write_bytecode"]:
                        found.append(f"{name}: child flags are not {' '.join(self.flags)}")
                    if report["sources_read"] != expected:
                        found.append(f"{name} from {module_dir} compiled {report['sources_read'] or 'nothing'}, "
                                     f"expected {expected or 'nothing'}")
            return found

        found = problems()
        if not found:
            return "the interpreter's own cached bytecode"
        self.env["PYTHONPYCACHEPREFIX"] = os.path.join(self.scratch, "pycache")
        for name in ["friendli_image", "snippet"] + (["friendli SDK"] if sdk else []):
            self.run(COLD[name], sdk=name == "friendli SDK", write_bytecode=True, MODEL="png-1mib")
        again = problems()
        if again:
            raise RuntimeError("children do not load the bytecode they should:\n  " + "\n  ".join(found + again))
        return "a bytecode cache in the scratch directory (the interpreter's own is missing or stale)"

    def program(self, code, **constants):
        """The source of a program: ``code`` after its constants (bare import programs get none)."""
        if code in (PASS, IMPORT_FI, IMPORT_SNIPPET, IMPORT_SDK):
            return code + "\n"
        constants.setdefault("OUT", self.scratch)
        constants.setdefault("REQUEST", REQUEST)
        return "import json, sys\n" + "".join(f"{k} = {v!r}\n" for k, v in constants.items()) + code

    def run(self, code, sdk=False, extra_flags=(), peak=False, module_dir=None, write_bytecode=False, prelude="",
            **constants):
        """Run one program; return (wall s, CPU s, peak RSS bytes or None, stdout, stderr).

        With ``peak``, the program's peak RSS is read after it has run.  ``module_dir``
        is where friendli_image is imported from (default: the copy with bytecode);
        ``prelude`` goes before everything, even the constants.
        """
        source = prelude + self.program(code, **constants) + (PRINT_PEAK if peak else "")
        flags = [f for f in self.flags if f != "-B"] if write_bytecode else self.flags
        args = [sys.executable, *flags, *extra_flags, "-c", source]
        path = [module_dir or self.module_dir] + (self.sdk_path if sdk else [])
        env = dict(self.env, PYTHONPATH=os.pathsep.join(path))
        err_path = os.path.join(self.scratch, "stderr.txt")
        with open(err_path, "w+b") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, env=env, cwd=self.scratch)
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

    def result(self, code, sdk=False, **options):
        """Run one program and return the JSON it printed last."""
        return json.loads(self.run(code, sdk=sdk, **options)[3].strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------

NO_BYTECODE = "friendli_image, no bytecode"
WARM_BATCH = 100
RSS_SLACK = 0.005  # row 4: how far above the snippet's peak RSS growth still counts as "no higher"


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

    def ratio(self, digits=2):
        return f"{self.median:.{digits}f}x [{self.low:.{digits}f}-{self.high:.{digits}f}]"


def alternating(runs, variants, measure):
    """Measure each variant ``runs`` times, in rounds whose order reverses every time.

    A B C, C B A, A B C, ...: neighbours in ``variants`` always run back to back, each
    first as often as second, so drift in the machine's speed hits both alike.
    Returns the values of each variant, round by round.
    """
    values = {name: [] for name in variants}
    for i in range(runs):
        for name in variants if i % 2 == 0 else variants[::-1]:
            values[name].append(measure(name))
    return values


def per_pair(mine, base, compare=operator.truediv):
    """Median [min-max] of ``compare`` over adjacent pairs (mine[i], base[i])."""
    return Stat(compare(a, b) for a, b in zip(mine, base))


def column(values, index):
    return {name: [v[index] for v in vs] for name, vs in values.items()}


def measure_import(runner, runs, sdk):
    """Per program, round by round: (wall s, peak RSS bytes) of a fresh interpreter that imports and exits."""
    programs = {"friendli_image": IMPORT_FI, "snippet": IMPORT_SNIPPET, "pass": PASS}
    if sdk:
        programs["friendli SDK"] = IMPORT_SDK

    def measure(name):
        wall, _, peak = runner.run(programs[name], sdk=name == "friendli SDK", peak=True)[:3]
        return wall, peak

    for name in programs:  # warm the page cache
        measure(name)
    return alternating(runs, list(programs), measure)


def measure_cold(runner, runs, sdk):
    """Per client, round by round: (wall s, CPU s) of a fresh process making one call and saving the image.

    NO_BYTECODE is friendli_image imported from a fresh copy every run, so compiled from source.
    The snippet sits between the two friendli_image variants: it runs next to each.
    """
    variants = ["friendli_image", "snippet", NO_BYTECODE] + (["friendli SDK"] if sdk else [])

    def measure(name):
        if name == NO_BYTECODE:
            with runner.fresh_module() as folder:
                return runner.run(COLD["friendli_image"], module_dir=folder, MODEL="png-1mib")[:2]
        return runner.run(COLD[name], sdk=name == "friendli SDK", MODEL="png-1mib")[:2]

    for name in variants:  # warm the page cache
        measure(name)
    return alternating(runs, variants, measure)


def measure_warm(runner, runs, calls, sdk):
    """Per client: CPU seconds per call (one value per process), and CPU seconds per batch (all batches)."""
    variants = ["friendli_image", "snippet"] + (["friendli SDK"] if sdk else [])
    setups = {name: SETUP[name] for name in variants}
    per_call = {name: [] for name in variants}
    batches = {name: [] for name in variants}
    for _ in range(runs):
        cpu = runner.result(WARM, sdk=sdk, SETUPS=setups, MODEL="small", N=calls, BATCH=WARM_BATCH, WARMUP=20)
        for name in variants:
            per_call[name].append(sum(cpu[name]) / (len(cpu[name]) * WARM_BATCH))
            batches[name].extend(cpu[name])
    return per_call, batches


def measure_big(runner, runs, sdk):
    """Per client, round by round: peak RSS growth (bytes) over the call and the saves, in a fresh process."""
    variants = ["friendli_image", "snippet"] + (["friendli SDK"] if sdk else [])

    def measure(name):
        peaks = runner.result(SETUP[name] + BIG, sdk=name == "friendli SDK", MODEL="big-4x8mib")
        return peaks["peak"] - peaks["base"]

    return alternating(runs, variants, measure)


def measure_threads(runner, runs, per_thread):
    """Per client and thread count: requests per second, one client shared by all threads."""
    variants = ["friendli_image", "snippet"]
    raw = alternating(
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
    parser.add_argument("--quick", action="store_true", help="fewer runs and calls: a smoke run (about 10 s)")
    parser.add_argument("--rows", default="1,2,3,4,5", help="which rows to measure, e.g. 2,3 (default: all)")
    parser.add_argument(
        "--module-dir", default=PROJECT, help="folder of the friendli_image.py to measure (default: the project's)"
    )
    parser.add_argument("--site", action="store_true", help="run children with site (and its .pth files)")
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
        import_runs, cold_runs, warm_runs, warm_calls, big_runs, thread_runs, per_thread = 8, 8, 2, 600, 2, 1, 2
    else:
        import_runs, cold_runs, warm_runs, warm_calls, big_runs, thread_runs, per_thread = 20, 30, 7, 1000, 6, 3, 5

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
        stdlib_bytecode = runner.check_bytecode(sdk)
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
        walls, peaks = column(imports, 0), column(imports, 1)
        wall = {name: Stat(values) for name, values in walls.items()}
        rss = {name: Stat(values) for name, values in peaks.items()}
        table.add(1, "import: process wall ms", wall["friendli_image"].show(1e3), "pass: " + wall["pass"].show(1e3),
                  f"+{per_pair(walls['friendli_image'], walls['pass'], operator.sub).median * 1e3:.0f} ms",
                  "no work at import", not work, wall["friendli SDK"].show(1e3) if sdk else "n/a")
        table.add(1, "import: peak RSS MiB", rss["friendli_image"].show(1 / MIB, 1),
                  "pass: " + rss["pass"].show(1 / MIB, 1),
                  f"+{(rss['friendli_image'].median - rss['pass'].median) / MIB:.1f} MiB", "", None,
                  rss["friendli SDK"].show(1 / MIB, 1) if sdk else "n/a")
        table.add(1, "import vs the snippet's own imports: wall ms", wall["friendli_image"].show(1e3),
                  "snippet: " + wall["snippet"].show(1e3),
                  f"{per_pair(walls['friendli_image'], walls['snippet']).ratio()} "
                  f"(+{per_pair(walls['friendli_image'], walls['snippet'], operator.sub).median * 1e3:.0f} ms)",
                  "only modules generate needs (see list)")
        notes.append(f"import audit: importing did {'nothing but define names' if not work else ', '.join(work)} "
                     "(no environment read, SSL context, socket, subprocess or file opened).")
        notes.append(f"modules `import friendli_image` loads beyond `import base64, json, urllib.request` "
                     f"({len(extra)}): " + ", ".join(extra))
        notes.append("  the costliest of them (cumulative ms under -X importtime, which inflates): "
                     + ", ".join(f"{m} {ms:.1f}" for ms, m in top[:8]))
    if 2 in results:
        cold = results[2]
        for mine, case, target in (("friendli_image", "bytecode cached", 1.3),
                                   (NO_BYTECODE, "no bytecode for the module", 1.35)):
            for index, unit in ((0, "wall"), (1, "CPU")):
                times = column(cold, index)
                ratio = per_pair(times[mine], times["snippet"])
                sdk_cell = "n/a"
                if sdk and mine == "friendli_image":
                    sdk_cell = Stat(times["friendli SDK"]).show(1e3)
                table.add(2, f"cold first call (1 MiB PNG), {case}: process {unit} ms", Stat(times[mine]).show(1e3),
                          "snippet: " + Stat(times["snippet"]).show(1e3), ratio.ratio(),
                          f"<= {target}x" if unit == "wall" else "",
                          ratio.median <= target if unit == "wall" else None, sdk_cell)
    if 3 in results:
        per_call, batches = results[3]
        ratio = per_pair(batches["friendli_image"], batches["snippet"])
        table.add(3, f"warm: client CPU us/call ({warm_calls} calls)", Stat(per_call["friendli_image"]).show(1e6),
                  "snippet: " + Stat(per_call["snippet"]).show(1e6), ratio.ratio(), "<= 1.2x", ratio.median <= 1.2,
                  Stat(per_call["friendli SDK"]).show(1e6) if sdk else "n/a")
    if 4 in results:
        big = results[4]
        body = server.sizes["big-4x8mib"]
        ratio = per_pair(big["friendli_image"], big["snippet"])

        def growth(name):
            stat = Stat(big[name])
            return f"{stat.show(1 / MIB, 1)} = {stat.median / body:.2f}x body"

        # Peak RSS varies by about 0.15% (130 KiB) from run to run whoever the client; one
        # more copy of one image would add 9%.  Hence a slack of RSS_SLACK.
        table.add(4, f"big response (4 x 8 MiB, body {body / MIB:.1f} MiB): peak RSS growth MiB",
                  growth("friendli_image"), "snippet: " + growth("snippet"), ratio.ratio(3), "<= 1.0x the snippet",
                  ratio.median <= 1.0 + RSS_SLACK, growth("friendli SDK") if sdk else "n/a")
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
    print("Cells: median [min-max] over runs (import %d, cold %d, warm %d processes, big %d, threads %d)."
          % (import_runs, cold_runs, warm_runs, big_runs, thread_runs))
    print("Ratios (x): friendli_image / snippet for each pair of adjacent runs, order alternating "
          f"(A B, B A, ...; warm: adjacent batches of {WARM_BATCH} calls in each process), "
          "then the median [min-max] of those per-pair ratios; +ms: the same for differences. "
          f"Row 4 is judged with {RSS_SLACK:.1%} slack: peak RSS varies by about 130 KiB (0.15%) from run to run, "
          "while one more copy of one image would add 9%.")
    print("baseline: `python -c pass` (row 1); a minimal urllib.request snippet doing the same work: "
          "POST JSON, read, json.loads, b64decode, write (rows 1-5).")
    print("bytecode: friendli_image compiled once (cached) or, for \"no bytecode\", copied into a fresh folder "
          f"and compiled from source on every run; the standard library uses {stdlib_bytecode}. "
          "Checked with an audit hook on the files children read, and after every no-bytecode run.")
    if not sdk and not args.no_sdk:
        print("friendli SDK: not importable here, so it has no column.")
    for note in notes:
        print(note)
    print(f"machine: {os.cpu_count()} CPUs, {platform.machine()} {platform.system()}, "
          f"{platform.python_implementation()} {platform.python_version()}; load average {load:.2f} at start; "
          f"children {'with' if args.site else 'without'} site (-S), no bytecode written (-B); "
          f"took {elapsed:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
