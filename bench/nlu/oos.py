"""Out of scope with no out-of-scope examples: CLINC150 dev, 10 examples per intent (issue 18).

Trains exactly as flows do (``LearnedNLU.fit`` with the in-scope examples only: 10 per
intent drawn with ``seed``), then scores the remaining in-scope rows (a seeded sample of
``--in-scope-rows``) and all 200 ``oos`` rows, which are only measured, never trained on:

* declined: out-of-scope messages the bot does not act on ("did you mean" / fallback);
* in-scope right: in-scope messages it acts on with the right intent;
* never declining: in-scope accuracy of the top intent alone (the ceiling).

Seeds 0-2 chose the rule and its quantile (``flows/nlu/classifier.py``); report on others.
The recipes run side by side in one process: today's ("now"), today's English view alone
("now-en": the out-of-scope rule without the multilingual view, which takes over messages the
English view is unsure of and then decides alone whether they are in scope) and the one before
issue 18 ("before").

    python bench/nlu/oos.py [--data ../shared/data] [--seeds 3,4,5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

OOS = "oos"
REPORT_SEEDS = (3, 4, 5)
IN_SCOPE_ROWS = 3000


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _rows(data: Path) -> list[tuple[str, str]]:
    import csv

    with open(data / "clinc150_dev.csv", newline="", encoding="utf-8") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def draw(rows: list[tuple[str, str]], seed: int, shots: int = 10, in_scope_rows: int = IN_SCOPE_ROWS):
    """(examples by intent, test rows): ``shots`` per intent; no oos row among the examples."""
    by: dict[str, list[str]] = defaultdict(list)
    for t, lab in rows:
        by[lab].append(t)
    rng = random.Random(seed)
    examples, rest, oos = {}, [], []
    for lab in sorted(by):
        xs = by[lab][:]
        rng.shuffle(xs)
        if lab == OOS:
            oos = [(t, OOS) for t in xs]
            continue
        examples[lab] = xs[:shots]
        rest += [(t, lab) for t in xs[shots:]]
    rng.shuffle(rest)
    return examples, rest[:in_scope_rows] + oos


def measure(nlu, examples: dict[str, list[str]], test: list[tuple[str, str]]) -> dict:
    t0 = time.perf_counter()
    nlu.fit(examples)
    train_s = time.perf_counter() - t0
    texts = [t for t, _ in test]
    res = []
    for i in range(0, len(texts), 256):
        res += nlu.classify(texts[i:i + 256])
    classes = nlu.intents.classes_
    right = closed = declined = n_in = n_oos = 0
    for (_, gold), (probs, sure, _) in zip(test, res):
        best = classes[int(probs.argmax())]
        if gold == OOS:
            n_oos += 1
            declined += not sure
        else:
            n_in += 1
            closed += best == gold
            right += bool(sure) and best == gold
    return {"oos_declined": round(declined / n_oos, 4), "inscope_right": round(right / n_in, 4),
            "inscope_never_declining": round(closed / n_in, 4), "n_inscope": n_in, "n_oos": n_oos,
            "train_s": round(train_s, 1)}


def oos_section(data: Path, seeds, factories: dict, in_scope_rows: int = IN_SCOPE_ROWS, say=_say) -> dict:
    """{recipe name: {"seeds": [...], "oos_declined", "inscope_right", ...means}} for each factory."""
    rows = _rows(data)
    out: dict = {name: {"seeds": []} for name in factories}
    for seed in seeds:
        examples, test = draw(rows, seed, in_scope_rows=in_scope_rows)
        for name, factory in factories.items():
            r = measure(factory(), examples, test)
            r["seed"] = seed
            out[name]["seeds"].append(r)
            say(f"oos {name} seed {seed}: declined {r['oos_declined']:.1%} of out-of-scope, in-scope right "
                f"{r['inscope_right']:.1%} (never declining {r['inscope_never_declining']:.1%})")
    for name, d in out.items():
        for k in ("oos_declined", "inscope_right", "inscope_never_declining"):
            d[k] = round(statistics.mean(r[k] for r in d["seeds"]), 4)
    return out


def brief(d: dict) -> str:
    return (f"declines {d['oos_declined'] * 100:.1f} % of out-of-scope at {d['inscope_right'] * 100:.1f} % "
            f"in-scope right (never declining {d['inscope_never_declining'] * 100:.1f} %)")


def factories(encoder) -> dict:
    from flows.nlu.classifier import BEFORE_ISSUE_18
    from flows.nlu.service import LearnedNLU

    return {"now": lambda: LearnedNLU(encoder=encoder, progress=lambda m: None),
            # the rule alone, without the multilingual view's verdict on the messages it takes over
            "now-en": lambda: LearnedNLU(encoder=encoder, progress=lambda m: None, multilingual=False),
            "before": lambda: LearnedNLU(encoder=encoder, progress=lambda m: None, multilingual=False,
                                         recipe=BEFORE_ISSUE_18)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="folder with clinc150_dev.csv")
    ap.add_argument("--seeds", default=",".join(map(str, REPORT_SEEDS)), help="10-shot draws (0-2 were tuned on)")
    ap.add_argument("--in-scope-rows", type=int, default=IN_SCOPE_ROWS, help="in-scope test rows per seed")
    ap.add_argument("--only", help="comma-separated subset of now,now-en,before")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from flows.nlu.encoder import shared_encoder

    fs = factories(shared_encoder(2))
    if args.only:
        fs = {k: fs[k] for k in args.only.split(",")}
    res = oos_section(args.data, [int(s) for s in args.seeds.split(",")], fs, args.in_scope_rows)
    for name, d in res.items():
        print(f"{name:<7} {brief(d)}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
