"""NLU benchmark: accuracy, out-of-scope, complaints, latency, memory and throughput.

Every figure comes from the same code path as the product (``omnibot nlu eval``
trains exactly as flows do) on the development splits in ../shared/data, which
are read, never copied. Protocol (the data's README):

* 10-shot: 10 rows per label drawn from the dev file (seeds 0, 1, 2), tested on
  all remaining rows; CLINC150's ``oos`` rows count as a label for the draw, so
  10 of them place the threshold and the rest are tested.
* full: a stratified 80/20 split (seed 0).
* baseline, same process and split: TF-IDF (word 1-2 + char 3-5 grams) +
  logistic regression, no sentence model, no threshold.
* complaints: 5-fold stratified cross-validation on flows/nlu/complaints_default.csv.
* latency: one message alone through the model and both classifiers (demo flows).
* throughput: 64 concurrent conversations through ``LearnedNLU.analyze`` (micro-
  batched) against the same messages one at a time, in the same process.
* multilingual probe: ``bench/nlu/probe.py`` (both recipes side by side);
  ``--english-only`` runs everything here with the recipe before issue 18.
* issue 18, side by side in the same run (``--skip-issue18`` to leave out): today's recipe and
  the one before on the multilingual probe per language, out of scope with no out-of-scope
  examples (``bench/nlu/oos.py``: CLINC150 dev 10-shot, seeds 3-5, never tuned on), complaint
  macro-F1 on the held-out sets (tests/fixtures/complaints_heldout_*.csv) and by 5-fold CV on
  each recipe's own training rows, and English 10-shot accuracy for the recipe before.
* memory: peak RSS of a fresh process that loads the model and trains the demo flows.
* training: a fresh process loads what a start loads before it trains (imports, the English sentence
  model: ``load``, once per start) and then trains CLINC150 150 x 10 and 150 x 66 (~10,000 rows)
  as flows do (``train``: what a flows reload waits for; at a start it loads the language detector's
  models and the multilingual model in turn and frees each before the next); wall and CPU time of
  each and the peak RSS of the whole process (``--train-sizes``; ``--serving``: both loaded before
  and kept through the training).

    python bench/nlu/run.py [--data ../shared/data] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DATASETS = {"banking77": "banking77_dev.csv", "hwu64": "hwu64_kfold1_dev.csv", "clinc150": "clinc150_dev.csv"}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def _shuffled_by_label(rows, seed: int):
    by = defaultdict(list)
    for t, lab in rows:
        by[lab].append(t)
    rng = random.Random(seed)
    for lab in sorted(by):
        xs = by[lab][:]
        rng.shuffle(xs)
        yield lab, xs


def shots_split(rows, k: int, seed: int):
    """k rows per label to train on, the rest to test."""
    train, test = [], []
    for lab, xs in _shuffled_by_label(rows, seed):
        train += [(t, lab) for t in xs[:k]]
        test += [(t, lab) for t in xs[k:]]
    return train, test


def split_80_20(rows, seed: int = 0):
    """Stratified: 20% of each label to test."""
    train, test = [], []
    for lab, xs in _shuffled_by_label(rows, seed):
        n = max(1, round(len(xs) * 0.2))
        test += [(t, lab) for t in xs[:n]]
        train += [(t, lab) for t in xs[n:]]
    return train, test


def tfidf_baseline(train, test) -> float:
    """Accuracy of TF-IDF + logistic regression on the in-scope rows (closed set)."""
    import numpy as np
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train = [(t, lab) for t, lab in train if lab != "oos"]
    test = [(t, lab) for t, lab in test if lab != "oos"]
    w = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit([t for t, _ in train])
    c = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True).fit([t for t, _ in train])
    X = lambda rows: sp.hstack([w.transform([t for t, _ in rows]), c.transform([t for t, _ in rows])]).tocsr()  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = LogisticRegression(C=10, max_iter=3000).fit(X(train), [lab for _, lab in train])
    pred = lr.predict(X(test))
    return float(np.mean(pred == np.array([lab for _, lab in test])))


def run_eval(train, test, tmp: Path, nlu_factory) -> dict:
    from flows.nlu.evaluate import evaluate_intents

    a, b = write(tmp / "train.csv", train), write(tmp / "test.csv", test)
    buf = io.StringIO()
    evaluate_intents(str(a), str(b), nlu=nlu_factory(), out=buf, err=io.StringIO())
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def accuracy_section(data: Path, seeds: list[int], datasets: list[str], tmp: Path, nlu_factory) -> dict:
    out: dict = {}
    for name in datasets:
        rows = read(data / DATASETS[name])
        ds: dict = {"rows": len(rows)}
        for seed in seeds:
            train, test = shots_split(rows, 10, seed)
            say(f"{name}: 10-shot seed {seed} ({len(train)} train / {len(test)} test)")
            t0 = time.perf_counter()
            r = run_eval(train, test, tmp, nlu_factory)
            r["baseline_tfidf_accuracy"] = round(tfidf_baseline(train, test), 4)
            r["wall_s"] = round(time.perf_counter() - t0, 1)
            ds.setdefault("10shot", []).append(r)
            say(f"  -> {_brief(r)}")
        train, test = split_80_20(rows)
        say(f"{name}: full 80/20 ({len(train)} train / {len(test)} test)")
        r = run_eval(train, test, tmp, nlu_factory)
        r["baseline_tfidf_accuracy"] = round(tfidf_baseline(train, test), 4)
        ds["full"] = r
        say(f"  -> {_brief(r)}")
        out[name] = ds
    return out


def _brief(r: dict) -> str:
    s = f"accuracy {r['accuracy']:.4f} (TF-IDF baseline {r['baseline_tfidf_accuracy']:.4f})"
    if "inscope_accuracy" in r:
        s += f", in-scope {r['inscope_accuracy']:.4f}, oos recall {r['oos_recall']:.4f}"
    return s + f", train {r['train_s']:.1f} s, p50 {r['p50_ms']:.2f} ms"


def complaint_section(nlu_factory, folds: int = 5, rows: tuple[list[str], list[str]] | None = None) -> dict:
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from flows.nlu.evaluate import macro_f1
    from flows.nlu.service import COMPLAINT, NOT_COMPLAINT, default_complaint_examples

    texts, labels = rows or default_complaint_examples()
    f1s, accs = [], []
    for i, (tr, te) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=0).split(texts, labels)):
        nlu = nlu_factory()
        nlu.fit_complaints([texts[j] for j in tr if labels[j] == COMPLAINT],
                           [texts[j] for j in tr if labels[j] == NOT_COMPLAINT], use_default=False)
        scores = [s for _, _, s in nlu.classify([texts[j] for j in te])]
        pred = [COMPLAINT if s >= nlu.complaint_threshold else NOT_COMPLAINT for s in scores]
        gold = [labels[j] for j in te]
        f1s.append(macro_f1(gold, pred))
        accs.append(float(np.mean([p == g for p, g in zip(pred, gold)])))
        say(f"complaints fold {i + 1}/{folds}: macro-F1 {f1s[-1]:.4f}")
    return {"rows": len(texts), "folds": folds, "macro_f1": round(float(np.mean(f1s)), 4),
            "macro_f1_sd": round(float(np.std(f1s)), 4), "accuracy": round(float(np.mean(accs)), 4)}


def load_section(nlu_factory, seconds: float, concurrency: int) -> dict:
    """Latency of one message alone; throughput under concurrent load vs one at a time."""
    from flows.loader import load_flows

    fs = load_flows(ROOT / "flows" / "demo")
    nlu = nlu_factory()
    nlu.fit(fs.examples())
    msgs = [t for ts in fs.examples().values() for t in ts]
    rng = random.Random(0)
    variants = [f"{m} {w}".strip() for m in msgs for w in ("", "please", "thanks", "asap", "today?")]
    rng.shuffle(variants)

    nlu.classify(variants[:5])
    forget = getattr(nlu.encoder, "forget", lambda: None)
    lat = []
    for t in variants[:300]:
        forget()      # the encoder's memory by token ids (the warm-up's texts are among these)
        t0 = time.perf_counter()
        nlu.classify([t])
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()

    async def sequential() -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            await nlu.analyze(variants[n % len(variants)])
            n += 1
        return n / (time.perf_counter() - t0)

    async def concurrent() -> tuple[float, float]:
        done = 0
        stop = time.perf_counter() + seconds
        latencies: list[float] = []

        async def conversation(k: int) -> None:
            nonlocal done
            i = k
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                await nlu.analyze(variants[i % len(variants)])
                latencies.append((time.perf_counter() - t0) * 1000)
                done += 1
                i += concurrency
        t0 = time.perf_counter()
        await asyncio.gather(*(conversation(k) for k in range(concurrency)))
        return done / (time.perf_counter() - t0), statistics.median(latencies)

    seq = asyncio.run(sequential())
    calls0, items0 = nlu.batcher.calls, nlu.batcher.items
    conc, conc_p50 = asyncio.run(concurrent())
    calls, items = nlu.batcher.calls - calls0, nlu.batcher.items - items0
    return {"p50_ms": round(lat[len(lat) // 2], 2), "p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 2),
            "one_at_a_time_msgs_per_s": round(seq, 1), "concurrent_msgs_per_s": round(conc, 1),
            "concurrency": concurrency, "concurrent_p50_ms": round(conc_p50, 2),
            "ratio_concurrent_vs_one_at_a_time": round(conc / seq, 2),
            "mean_batch": round(items / max(calls, 1), 1), "threads": nlu.encoder.threads}


def rss_probe() -> None:
    """(child process) load the model, train the demo flows, answer a few messages; print peak RSS."""
    from flows.loader import load_flows
    from flows.nlu.encoder import shared_encoder
    from flows.nlu.service import LearnedNLU

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fs = load_flows(ROOT / "flows" / "demo")
    nlu = LearnedNLU(encoder=shared_encoder(2), progress=lambda m: None)
    nlu.fit(fs.examples())
    for t in ["when are you open", "my parcel never came!!", "do you ship to Canada"] * 20:
        nlu.classify([t])
    print(json.dumps({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "python_baseline_rss_mb": round(base / 1024, 1)}))


TRAIN_SIZES = {"150x10": 10, "10k": 66}   # CLINC150 rows per intent: 1,500 and 9,900 (+ 10 oos)


def _rss_mb(field: str = "VmRSS") -> int:
    """This process's resident set (``VmHWM``: its peak), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024)
    return 0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def train_probe(size: str, data: Path, serving: bool = False, cache: Path | None = None, change: int = 0,
                preload: bool = False) -> None:
    """(child process) what a server pays to train CLINC150 (``TRAIN_SIZES``; 10 ``oos`` rows place
    the threshold) as flows do (intents, both views, and complaints); prints one JSON line.

    Two phases, timed apart (wall and CPU seconds):

    * ``load``: what the process holds before ``fit``. At a start (default) that is what a server
      loads before it trains its flows (``bot/app.py`` makes the ``LearnedNLU``, ``FlowEngine`` fits
      it): scikit-learn and scipy imported and the English sentence model; the fit then loads the
      language detector's models for the nine example languages (lingua) to sort the examples,
      frees them, and loads the multilingual model (USE) to encode them and frees it before the
      classifiers are fitted, so these pieces never sit in memory together (issue 18: peak under
      500 MB for 150 x 10). With ``serving`` or ``preload`` USE and the detector's models are
      loaded here too (``load_parts`` times each part loaded here).
    * ``train``: ``LearnedNLU.fit``: what a flows reload that changes intent examples makes a
      running server wait for (the new flows train while the old ones answer); at a start it
      includes loading the detector's models and USE (~3 s of CPU), which ``preload`` moves to
      ``load``.

    ``peak_rss_mb`` is the peak RSS of the whole process (loading and training). Without ``serving``
    the models are as at a start, or in a server whose customers wrote only English: training frees
    USE and the detector's models once the examples are encoded and sorted (they are loaded again by
    the first message that needs them; ``preload``: loaded before the fit all together, as this
    probe did before, then freed by the fit). With ``serving``, as in a server that has answered
    messages in other languages: they are loaded before and stay loaded through the training, and
    its peak is higher.

    ``cache``: the NLU's ``cache_dir`` (default: none, everything trained and encoded: "cold").
    ``change``: the last example of that many intents is replaced by another of the intent's rows,
    so that the classifiers retrain; with a ``cache`` an earlier run filled with the unchanged set,
    this is a reload that changed a few examples ("warm": the other embeddings, the examples'
    language judgements and the complaint model come from the cache)."""
    t_all, c_all = time.perf_counter(), _cpu()
    parts: dict[str, float] = {}

    def part(name: str, fn) -> None:
        t0 = time.perf_counter()
        fn()
        parts[name] = round(time.perf_counter() - t0, 2)
        parts[name + "_rss_mb"] = _rss_mb()

    def imports() -> None:
        import scipy.sparse  # noqa: F401
        import sklearn.feature_extraction.text  # noqa: F401
        import sklearn.linear_model  # noqa: F401
        import sklearn.model_selection  # noqa: F401

        from flows.nlu.service import LearnedNLU  # noqa: F401

    part("imports", imports)
    from flows import language
    from flows.nlu import multilingual
    from flows.nlu.encoder import shared_encoder
    from flows.nlu.service import LearnedNLU

    enc: list = []
    part("english_model", lambda: enc.append(shared_encoder(2)) or enc[0].encode(["warm up"]))
    ml = multilingual.shared_multilingual()

    def detector() -> None:
        with language._lock:
            det = language._detector(multilingual.EXAMPLE_LANGUAGES)
        if det is not None:
            det.compute_language_confidence_values("this loads the detector's models for every language")

    if serving or preload:   # at a start the fit loads (and frees) them when it needs them
        part("multilingual_model", lambda: ml.load() if ml is not None else None)
        part("language_detector", detector)
    if serving:
        language.serving()
        if ml is not None:
            ml.used = True
    t_fit = [0.0]
    verbose = bool(os.environ.get("TRAIN_PROBE_VERBOSE"))   # progress with times and RSS on stderr
    stage = ["loaded"]
    peaks: dict[str, int] = {}

    def progress(m: str) -> None:
        stage[0] = m
        say(f"+{time.perf_counter() - t_fit[0]:.1f} s {_rss_mb()} MB {m}")

    if verbose:
        import threading

        def sample() -> None:   # the highest RSS seen during each progress stage
            while True:
                rss = _rss_mb()
                if rss > peaks.get(stage[0], 0):
                    peaks[stage[0]] = rss
                time.sleep(0.05)

        threading.Thread(target=sample, daemon=True).start()
    nlu = LearnedNLU(encoder=enc[0], progress=progress if verbose else (lambda m: None), cache_dir=cache)
    examples: dict[str, list[str]] = {}
    oos: list[str] = []
    k = TRAIN_SIZES[size]
    for lab, xs in _shuffled_by_label(read(data / DATASETS["clinc150"]), 0):
        if lab == "oos":
            oos = xs[:10]
        else:
            mine = xs[:k]
            if len(examples) < change and len(xs) > k:
                mine = mine[:-1] + [xs[k]]
            examples[lab] = mine
    load_s, load_cpu = time.perf_counter() - t_all, _cpu() - c_all
    load_peak = max(_rss_mb("VmHWM"), round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    loaded_rss = _rss_mb()
    try:   # the peak from here on (Linux: "5" resets VmHWM to the current RSS)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    t0, c0 = time.perf_counter(), _cpu()
    t_fit[0] = t0
    nlu.fit(examples, out_of_scope=oos)
    train_s, train_cpu = time.perf_counter() - t0, _cpu() - c0
    train_peak = _rss_mb("VmHWM")
    if verbose:
        for m, rss in sorted(peaks.items(), key=lambda kv: -kv[1])[:8]:
            say(f"peak {rss} MB during: {m}")
    print(json.dumps({"size": size, "rows": sum(map(len, examples.values())), "intents": len(examples),
                      "state": "serving" if serving else "start", "preload": serving or preload,
                      "cache": cache is not None, "changed": change,
                      "trained_now": nlu.trained_now,
                      "load_s": round(load_s, 1), "load_cpu_s": round(load_cpu, 1), "load_parts": parts,
                      "train_s": round(train_s, 1), "train_cpu_s": round(train_cpu, 1),
                      "total_cpu_s": round(_cpu() - c_all, 1),
                      "peak_rss_mb": max(load_peak, train_peak), "loaded_rss_mb": loaded_rss,
                      "train_peak_rss_mb": train_peak,
                      "after_rss_mb": _rss_mb()}))


WARM_CHANGES = 15   # intents whose last example a "warm" reload changes (1 % of 150 x 10)


def training_section(data: Path, sizes: list[str], serving: bool = False, warm: list[str] = ()) -> dict:
    """Loading and training time and peak memory, each size in a fresh process (``train_probe``):
    "cold" (no cache, as the issue measures); for the sizes in ``warm`` also a reload that changed
    ``WARM_CHANGES`` examples, with the cache an earlier process filled (key ``<size>-warm``)."""
    out = {}

    def probe(*extra: str) -> dict:
        p = subprocess.run([sys.executable, __file__, "--train-probe", *extra, "--data", str(data)]
                           + (["--serving"] if serving else []), capture_output=True, text=True, check=True)
        return json.loads(p.stdout.strip().splitlines()[-1])

    for size in sizes:
        say(f"training: a fresh process loads the models and trains CLINC150 {size}")
        out[size] = probe(size)
        say(f"  -> {out[size]}")
        if size in warm:
            with tempfile.TemporaryDirectory() as cache:
                say(f"training, warm: {WARM_CHANGES} examples of {size} changed, the rest in the cache")
                probe(size, "--cache", cache)
                out[f"{size}-warm"] = probe(size, "--cache", cache, "--change", str(WARM_CHANGES))
                say(f"  -> {out[f'{size}-warm']}")
    return out


# -- issue 18: today's recipe next to the one before, in the same run -------------------------------

COMPLAINT_ROWS_BEFORE = 508   # complaints_default.csv before issue 18's additions (appended after these)
HELDOUT = {"heldout_b": "complaints_heldout_b.csv", "heldout_a_dev": "complaints_heldout_a.csv",
           "neutral": "neutral_messages.csv"}


def issue18_recipes(encoder) -> dict:
    """name -> (NLU factory, complaint training rows) for today's recipe and the one before."""
    from flows.nlu.classifier import BEFORE_ISSUE_18
    from flows.nlu.service import LearnedNLU, default_complaint_examples

    texts, labels = default_complaint_examples()
    return {"now": (lambda: LearnedNLU(encoder=encoder, progress=lambda m: None), (texts, labels)),
            "before": (lambda: LearnedNLU(encoder=encoder, progress=lambda m: None, multilingual=False,
                                          recipe=BEFORE_ISSUE_18),
                       (texts[:COMPLAINT_ROWS_BEFORE], labels[:COMPLAINT_ROWS_BEFORE]))}


def complaint_heldout(factory, rows) -> dict:
    """Macro-F1 on the held-out brand-directed sets (tests/fixtures), share of neutral chat flagged."""
    from flows.nlu.evaluate import macro_f1
    from flows.nlu.service import COMPLAINT, NOT_COMPLAINT, read_labelled_csv

    nlu = factory()
    texts, labels = rows
    nlu.fit_complaints([t for t, lab in zip(texts, labels) if lab == COMPLAINT],
                       [t for t, lab in zip(texts, labels) if lab == NOT_COMPLAINT], use_default=False)
    out = {"train_rows": len(texts)}
    for name, file in HELDOUT.items():
        t, gold = read_labelled_csv(ROOT / "tests" / "fixtures" / file)
        pred = [COMPLAINT if c >= nlu.complaint_threshold else NOT_COMPLAINT for _, _, c in nlu.classify(t)]
        out[name] = (round(sum(p == COMPLAINT for p in pred) / len(pred), 4) if name == "neutral"
                     else round(macro_f1(gold, pred), 4))
    return out


def issue18_section(args, encoder) -> dict:
    """Probe per language, out of scope (CLINC150, no oos examples), complaints held out and by CV,
    English 10-shot: each for today's recipe and the one before (bench/nlu/oos.py, probe.py)."""
    import bench.nlu.oos as oos
    import bench.nlu.probe as probe

    recipes = issue18_recipes(encoder)
    out: dict = {name: {} for name in recipes}
    questions = probe.load_probe()
    from flows.loader import load_flows
    demo = load_flows(ROOT / "flows" / "demo").examples()
    for name, (factory, rows) in recipes.items():
        say(f"issue 18 [{name}]: multilingual probe, complaints held out and 5-fold")
        nlu = factory()
        nlu.fit(demo)
        out[name]["probe"] = probe.score(nlu, questions)
        out[name]["complaints_heldout"] = complaint_heldout(factory, rows)
        out[name]["complaints_cv"] = complaint_section(factory, rows=rows)
    seeds = [oos.REPORT_SEEDS[0]] if args.quick else list(oos.REPORT_SEEDS)
    res = oos.oos_section(args.data, seeds, {n: f for n, (f, _) in recipes.items()}, args.oos_rows, say=say)
    for name in recipes:
        out[name]["oos"] = res[name]
    if not args.skip_accuracy and args.english_only is False:
        with tempfile.TemporaryDirectory() as tmp:
            english = [d for d in args.datasets.split(",") if d and d != "clinc150"]
            out["before"]["intents"] = accuracy_section(args.data, [0] if args.quick else [0, 1, 2], english,
                                                        Path(tmp), recipes["before"][0])
    return out


def summary_issue18(r: dict) -> str:
    import bench.nlu.oos as oos

    lines = ["issue 18, today's recipe | the one before (same run):"]
    now, before = r["now"], r["before"]
    langs = list(now["probe"])
    lines.append("  probe answered right  " + "  ".join(
        f"{lang} {now['probe'][lang]['answered_right'] * 100:.0f}|{before['probe'][lang]['answered_right'] * 100:.0f}"
        for lang in langs))
    lines.append("  probe confident-wrong " + "  ".join(
        f"{lang} {now['probe'][lang]['confident_wrong'] * 100:.0f}|{before['probe'][lang]['confident_wrong'] * 100:.0f}"
        for lang in langs))
    for name in ("now", "before"):
        lines.append(f"  out of scope [{name}] {oos.brief(r[name]['oos'])} (CLINC150 dev 10-shot, no oos examples, "
                     f"seeds {','.join(str(x['seed']) for x in r[name]['oos']['seeds'])})")
    for name in ("now", "before"):
        h, c = r[name]["complaints_heldout"], r[name]["complaints_cv"]
        lines.append(f"  complaints [{name}] held-out B macro-F1 {h['heldout_b'] * 100:.1f} (A, dev: "
                     f"{h['heldout_a_dev'] * 100:.1f}), neutral flagged {h['neutral'] * 100:.1f} %, "
                     f"5-fold CV {c['macro_f1'] * 100:.1f} on {c['rows']} rows")
    for ds, v in before.get("intents", {}).items():
        shots = v.get("10shot", [])
        if shots:
            lines.append(f"  {ds} 10-shot [before] acc {statistics.mean(x['accuracy'] for x in shots) * 100:.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="folder with banking77_dev.csv, hwu64_kfold1_dev.csv, clinc150_dev.csv")
    ap.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated subset")
    ap.add_argument("--quick", action="store_true", help="one 10-shot seed instead of three")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput run")
    ap.add_argument("--model", choices=["dynamic", "shipped"], default="dynamic")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--english-only", action="store_true",
                    help="the recipe before issue 18 (no multilingual view), to compare in the same run")
    ap.add_argument("--oos-rows", type=int, default=3000, help="in-scope CLINC150 rows tested per out-of-scope seed")
    ap.add_argument("--skip-issue18", action="store_true",
                    help="skip the side-by-side of today's recipe and the one before (probe, out of scope, complaints)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--rss-probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--train-sizes", default=",".join(TRAIN_SIZES),
                    help=f"training time / peak memory runs, comma-separated subset of {','.join(TRAIN_SIZES)} "
                         "(empty: none)")
    ap.add_argument("--train-warm", default="150x10",
                    help="sizes (of --train-sizes) also timed as a warm reload: an earlier process filled the NLU "
                         f"cache and {WARM_CHANGES} examples changed (empty: none)")
    ap.add_argument("--train-probe", choices=list(TRAIN_SIZES),
                    help="only time loading and training this size in this process (one JSON line; "
                         "TRAIN_PROBE_VERBOSE=1 prints each stage with its time and RSS)")
    ap.add_argument("--cache", type=Path, help="with --train-probe: the NLU cache directory (default: none, cold)")
    ap.add_argument("--change", type=int, default=0,
                    help="with --train-probe: replace the last example of this many intents (a reload that changed them)")
    ap.add_argument("--preload", action="store_true",
                    help="with --train-probe: load USE and the language detector's models before the fit, all "
                         "together (a start loads each inside the fit and frees it before the next: lower peak)")
    ap.add_argument("--serving", action="store_true",
                    help="training runs as in a server that has answered messages in other languages: the "
                         "multilingual model and the language detector stay loaded through it (higher peak)")
    args = ap.parse_args()
    if args.rss_probe:
        rss_probe()
        return
    if args.train_probe:
        train_probe(args.train_probe, args.data, serving=args.serving, cache=args.cache, change=args.change,
                    preload=args.preload)
        return

    from flows.nlu.classifier import BEFORE_ISSUE_18, DEFAULT_RECIPE
    from flows.nlu.encoder import shared_encoder
    from flows.nlu.service import LearnedNLU

    encoder = shared_encoder(args.threads, args.model)

    def factory() -> LearnedNLU:
        return LearnedNLU(encoder=encoder, progress=lambda m: None, multilingual=not args.english_only,
                          recipe=BEFORE_ISSUE_18 if args.english_only else DEFAULT_RECIPE)

    results: dict = {"model": encoder.model_id, "threads": args.threads, "cpus": os.cpu_count()}
    say("memory: a fresh process loads the model and trains the demo flows")
    probe = subprocess.run([sys.executable, __file__, "--rss-probe"], capture_output=True, text=True, check=True)
    results["memory"] = json.loads(probe.stdout.strip().splitlines()[-1])
    say(f"  -> {results['memory']}")
    results["training"] = training_section(args.data, [x for x in args.train_sizes.split(",") if x], args.serving,
                                           [x for x in args.train_warm.split(",") if x])
    say("latency and throughput (demo flows)")
    results["load"] = load_section(factory, args.seconds, concurrency=64)
    say(f"  -> {results['load']}")
    say("complaint detector: 5-fold cross-validation")
    results["complaints"] = complaint_section(factory)
    if not args.skip_accuracy:
        with tempfile.TemporaryDirectory() as tmp:
            results["intents"] = accuracy_section(args.data, [0] if args.quick else [0, 1, 2],
                                                  [d for d in args.datasets.split(",") if d], Path(tmp), factory)
    if not args.skip_issue18:
        results["issue18"] = issue18_section(args, encoder)
    print(summary(results) + ("\n" + summary_issue18(results["issue18"]) if "issue18" in results else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True))


def summary(r: dict) -> str:
    lines = [f"model {r['model']} ({r['threads']} threads, {r['cpus']} CPUs)"]
    m, ld, c = r["memory"], r["load"], r["complaints"]
    lines.append(f"memory    peak RSS {m['peak_rss_mb']} MB with the model loaded and the demo flows trained")
    for t in r.get("training", {}).values():
        lines.append(f"training  {t['size']}{' warm (%d changed)' % t['changed'] if t.get('changed') else ''} "
                     f"({t['rows']} rows, {t['intents']} intents): load {t['load_s']} s "
                     f"({t['load_cpu_s']} s CPU; once, at start: imports, English model"
                     + (", USE, language detector) + " if t.get("preload", t.get("state") == "serving") else ") + ")
                     + 
                     f"train {t['train_s']} s ({t['train_cpu_s']} s CPU; what a reload waits for), peak RSS "
                     f"{t['peak_rss_mb']} MB ({t['loaded_rss_mb']} MB loaded; "
                     + ("USE and the detector kept through it)" if t.get("state") == "serving"
                        else "USE and the detector freed once used)"))
    lines.append(f"latency   one message p50 {ld['p50_ms']} ms, p99 {ld['p99_ms']} ms")
    lines.append(f"load      {ld['concurrent_msgs_per_s']} msg/s with {ld['concurrency']} concurrent conversations "
                 f"(x{ld['ratio_concurrent_vs_one_at_a_time']} of one at a time: "
                 f"{ld['one_at_a_time_msgs_per_s']} msg/s; mean batch {ld['mean_batch']})")
    lines.append(f"complaint macro-F1 {c['macro_f1'] * 100:.1f} (sd {c['macro_f1_sd'] * 100:.1f}), "
                 f"{c['folds']}-fold CV on {c['rows']} rows")
    for name, ds in r.get("intents", {}).items():
        shots = ds.get("10shot", [])
        acc = statistics.mean(x["accuracy"] for x in shots) if shots else float("nan")
        base = statistics.mean(x["baseline_tfidf_accuracy"] for x in shots) if shots else float("nan")
        line = f"{name:<10} 10-shot acc {acc * 100:.2f} (TF-IDF {base * 100:.2f}, x{acc / base:.3f})"
        if shots and "inscope_accuracy" in shots[0]:
            line += (f", in-scope {statistics.mean(x['inscope_accuracy'] for x in shots) * 100:.2f}"
                     f" (never rejecting {statistics.mean(x['inscope_accuracy_closed'] for x in shots) * 100:.2f})"
                     f" / oos recall {statistics.mean(x['oos_recall'] for x in shots) * 100:.2f}")
        f = ds["full"]
        line += f" | full acc {f['accuracy'] * 100:.2f} (TF-IDF {f['baseline_tfidf_accuracy'] * 100:.2f})"
        if "inscope_accuracy" in f:
            line += (f", in-scope {f['inscope_accuracy'] * 100:.2f} (never rejecting "
                     f"{f['inscope_accuracy_closed'] * 100:.2f}) / oos recall {f['oos_recall'] * 100:.2f}")
        line += f" | train {statistics.mean(x['train_s'] for x in shots) if shots else 0:.1f} s (10-shot), {f['train_s']:.0f} s (full)"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
