"""Multilingual probe: how well the demo flows understand customers in nine languages.

Trains the demo flows (flows/demo, English examples only) exactly as the bot does, then
scores tests/fixtures/nlu_multilingual_probe.yaml per language:

* top-1: the best intent is the right one (in-scope messages; what "did you mean" shows first);
* answered right: the bot acts on the right intent without asking (in-scope messages);
* confident-wrong: the bot acts on a wrong intent, or answers an out-of-scope message
  (share of all the language's messages);
* oos declined: out-of-scope messages that get "did you mean" / fallback.

``--english-only`` runs today's recipe (no multilingual view) for comparison; without it both
are run, side by side, in the same process.

``--views`` also scores each sentence model alone (English MiniLM, USE multilingual, e5) with
its ms per message, which is how the views were chosen (README "Languages"). ``--set`` scores
another file of the same shape: bench/nlu/multilingual_dev.yaml is the dev set the combination
rule was tuned on; the probe is held out.

    python bench/nlu/probe.py [--json out.json] [--views] [--set bench/nlu/multilingual_dev.yaml]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PROBE = ROOT / "tests" / "fixtures" / "nlu_multilingual_probe.yaml"
OOS = "oos"


def load_probe(path: Path = PROBE) -> dict[str, list[tuple[str, str]]]:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))["languages"]
    return {lang: [(str(label), str(text)) for label, text in rows] for lang, rows in data.items()}


def score(nlu, probe: dict[str, list[tuple[str, str]]]) -> dict[str, dict]:
    """Per-language figures (see the module doc) for a trained LearnedNLU."""
    out: dict[str, dict] = {}
    for lang, rows in probe.items():
        texts = [t for _, t in rows]
        res = nlu.classify(texts)
        classes = nlu.intents.classes_
        top1 = answered = wrong = oos_ok = n_in = n_oos = 0
        for (gold, _), (probs, sure, _) in zip(rows, res):
            best = classes[int(probs.argmax())]
            if gold == OOS:
                n_oos += 1
                oos_ok += not sure
                wrong += bool(sure)
            else:
                n_in += 1
                top1 += best == gold
                answered += bool(sure) and best == gold
                wrong += bool(sure) and best != gold
        out[lang] = {"n": len(rows), "top1": round(top1 / n_in, 4), "answered_right": round(answered / n_in, 4),
                     "confident_wrong": round(wrong / len(rows), 4),
                     "oos_declined": round(oos_ok / n_oos, 4) if n_oos else None}
    return out


def latency_ms(nlu, texts: list[str]) -> float:
    """Median ms of one message alone; the encoder forgets the (already scored) texts first."""
    nlu.classify(texts[:3])
    forget = getattr(nlu.encoder, "forget", lambda: None)
    lat = []
    for t in texts:
        forget()
        t0 = time.perf_counter()
        nlu.classify([t])
        lat.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(lat), 2)


def run(multilingual: bool, probe, *, extra: dict[str, list[str]] | None = None) -> dict:
    from flows.loader import load_flows
    from flows.nlu.encoder import shared_encoder
    from flows.nlu.service import LearnedNLU

    examples = {k: list(v) for k, v in load_flows(ROOT / "flows" / "demo").examples().items()}
    for k, v in (extra or {}).items():
        examples.setdefault(k, []).extend(v)
    nlu = LearnedNLU(encoder=shared_encoder(1), progress=lambda m: None, multilingual=multilingual)
    nlu.fit(examples)
    res = {"languages": score(nlu, probe)}
    res["p50_ms"] = latency_ms(nlu, [t for rows in probe.values() for _, t in rows])
    en = res["languages"]["en"]["answered_right"]
    res["worst_ratio_to_english"] = round(min(v["answered_right"] for v in res["languages"].values()) / max(en, 1e-9), 3)
    res["worst_confident_wrong"] = max(v["confident_wrong"] for v in res["languages"].values())
    nlu.close()
    return res


def views(probe) -> dict:
    """Each sentence model alone, trained the same way on the demo's English examples: top-1 and
    answered right per language, and the median ms per message (model + classifier, one thread)."""
    from dataclasses import replace

    from flows.loader import load_flows
    from flows.nlu.encoder import shared_encoder
    from flows.nlu.multilingual import shared_e5, shared_multilingual
    from flows.nlu.service import MULTILINGUAL_EMB_WEIGHT, LearnedNLU

    ex = load_flows(ROOT / "flows" / "demo").examples()
    texts = [t for _, ts in sorted(ex.items()) for t in ts]
    labels = [lab for lab, ts in sorted(ex.items()) for _ in ts]
    nlu = LearnedNLU(encoder=shared_encoder(1), progress=lambda m: None, multilingual=False, e5=False)
    out = {}
    for name, enc in (("english_minilm", None), ("use_multilingual", shared_multilingual()), ("e5_small", shared_e5())):
        if name != "english_minilm" and enc is None:
            continue
        clf = nlu._train("intents", texts, labels, anchors=True, encoder=enc,
                         recipe=replace(nlu.recipe, emb_weight=MULTILINGUAL_EMB_WEIGHT) if enc else None)

        def run(ts, enc=enc, clf=clf):
            emb = enc.encode(ts) if enc is not None else nlu.encoder.encode(ts, parallel=False)
            return clf.predict(ts, emb)

        res, lat = {}, []
        for lang, rows in probe.items():
            ins = [(g, t) for g, t in rows if g != OOS]
            p, c = run([t for _, t in ins])
            sure = clf.in_scope(p, c)
            best = [clf.classes_[int(i)] for i in p.argmax(axis=1)]
            res[lang] = {"top1": round(sum(b == g for b, (g, _) in zip(best, ins)) / len(ins), 4),
                         "answered_right": round(sum(bool(s) and b == g for s, b, (g, _) in zip(sure, best, ins))
                                                 / len(ins), 4)}
        for rows in probe.values():
            for _, t in rows:
                getattr(nlu.encoder, "forget", lambda: None)()   # scored above: not from memory
                t0 = time.perf_counter()
                run([t])
                lat.append((time.perf_counter() - t0) * 1000)
        out[name] = {"languages": res, "p50_ms": round(statistics.median(lat), 2)}
    nlu.close()
    return out


def views_table(res: dict) -> str:
    langs = list(next(iter(res.values()))["languages"])
    lines = ["each model alone: top-1 % per language (answered right %), ms per message",
             "  model              " + " ".join(f"{lang:>8}" for lang in langs) + "      ms"]
    for name, r in res.items():
        lines.append(f"  {name:<18} " + " ".join(f"{v['top1'] * 100:3.0f} ({v['answered_right'] * 100:3.0f})"
                                                for v in r["languages"].values()) + f"  {r['p50_ms']:6.2f}")
    return "\n".join(lines)


def table(name: str, res: dict) -> str:
    lines = [f"{name}: p50 {res['p50_ms']} ms per message (one thread, model + classifiers)",
             "  lang  top-1  answered-right  confident-wrong  oos-declined"]
    for lang, v in res["languages"].items():
        lines.append(f"  {lang:<5} {v['top1'] * 100:5.0f}  {v['answered_right'] * 100:14.0f}  "
                     f"{v['confident_wrong'] * 100:15.0f}  {(v['oos_declined'] or 0) * 100:12.0f}")
    lines.append(f"  worst language / English (answered right): {res['worst_ratio_to_english']:.2f}; "
                 f"worst confident-wrong {res['worst_confident_wrong'] * 100:.0f} %")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--english-only", action="store_true", help="only today's English-only recipe")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--set", type=Path, default=PROBE, help=f"messages to score (default: the probe, {PROBE.name})")
    ap.add_argument("--views", action="store_true", help="also score each sentence model alone, with its cost")
    args = ap.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    probe = load_probe(args.set)
    results = {}
    for name, ml in ([("english_only", False)] if args.english_only else
                     [("english_only", False), ("multilingual", True)]):
        results[name] = run(ml, probe)
        print(table(name, results[name]), flush=True)
    if args.views:
        results["views"] = views(probe)
        print(views_table(results["views"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
