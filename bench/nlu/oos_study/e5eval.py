# Candidate out-of-scope scores, issue 18 (see flows/nlu/README.md). Embeddings and scores are cached
# in $OOS_STUDY_DIR (default /tmp/nlu-oos): embed.py en|use|e5, then study.py 0 1 2, analyze.py 0 1 2.
import os
DIR = os.environ.get("OOS_STUDY_DIR", "/tmp/nlu-oos")
import csv, random, numpy as np
from collections import defaultdict
_analyze: dict = {}                 # analyze.py's helpers, without its study (all before "res = {}")
exec(open(os.path.join(os.path.dirname(__file__), "analyze.py")).read().split("res = {}")[0], _analyze)
load, curve = _analyze["load"], _analyze["curve"]
rows = list(csv.DictReader(open("" + os.environ.get("CLINC150_DEV", "/work/shared/data/clinc150_dev.csv") + "", encoding="utf-8")))
labels = np.array([r["label"] for r in rows], dtype=object)
E5 = np.load(DIR + "/clinc_e5.npy"); EN = np.load(DIR + "/clinc_en.npy")
def unit(x): return x / np.linalg.norm(x, axis=1, keepdims=True)
E5 = unit(E5)
def draw(seed, k=10, n_test_in=4000):
    by = defaultdict(list)
    for i, lab in enumerate(labels): by[lab].append(i)
    rng = random.Random(seed); tr, te = [], []
    for lab in sorted(by):
        xs = by[lab][:]; rng.shuffle(xs)
        if lab == "oos": te += xs; continue
        tr += xs[:k]; te += xs[k:]
    te = np.array(te); tr = np.array(tr)
    ins = te[labels[te] != "oos"]; oos = te[labels[te] == "oos"]
    rs = np.random.RandomState(seed); ins = rs.choice(ins, min(n_test_in, len(ins)), replace=False)
    return tr, np.concatenate([ins, oos])
out = {}
for s in (0, 1, 2):
    d = load(s); tr, te = draw(s); gold = d["gold_te"]; io = gold < 0
    cls = sorted(set(labels[tr])); Y = np.searchsorted(cls, labels[tr])
    C = E5[te] @ E5[tr].T
    knn_pred = Y[C.argmax(1)]
    M = unit(np.stack([E5[tr][Y == c].mean(0) for c in range(len(cls))]))
    cm = E5[te] @ M.T
    correct_en = d["te_pred_en"] == gold
    out.setdefault("closed e5 nearest-centre", []).append(np.mean(cm.argmax(1)[~io] == gold[~io]))
    out.setdefault("closed e5 1-NN", []).append(np.mean(knn_pred[~io] == gold[~io]))
    zc = (d["te_maxp"] - np.median(d["oof_maxp"])) / np.subtract(*np.quantile(d["oof_maxp"], [.75, .25]))
    for nm, v in (("cos_e5 (nearest example)", C.max(1)), ("knn3_e5", np.sort(C, 1)[:, -3:].mean(1)), ("cmean_e5", cm.max(1)),
                  ("z(maxp)+ rank-ish cmean_e5", zc + (cm.max(1) - np.median(cm.max(1)[~io])) / 0.05)):
        c = curve(v, correct_en, io); out.setdefault(nm, []).append([c[t] for t in (0.8, 0.85, 0.9, 0.95)])
for k, v in out.items(): print(f"{k:30s}", np.round(np.mean(v, 0) * 100, 2))
