"""Compute candidate OOS scores on CLINC150 dev, 10-shot, no oos in training. Saves npz per seed."""
# Candidate out-of-scope scores, issue 18 (see flows/nlu/README.md). Embeddings and scores are cached
# in $OOS_STUDY_DIR (default /tmp/nlu-oos): embed.py en|use|e5, then study.py 0 1 2, analyze.py 0 1 2.
import os
DIR = os.environ.get("OOS_STUDY_DIR", "/tmp/nlu-oos")

import sys, csv, random, numpy as np, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from dataclasses import replace
from collections import defaultdict
from flows.nlu.classifier import TextClassifier, Rows, DEFAULT_RECIPE, label_text
from sklearn.model_selection import StratifiedKFold

rows = list(csv.DictReader(open("" + os.environ.get("CLINC150_DEV", "/work/shared/data/clinc150_dev.csv") + "", encoding="utf-8")))
texts = [r["text"] for r in rows]; labels = np.array([r["label"] for r in rows], dtype=object)
EN = np.load(DIR + "/clinc_en.npy"); USE = np.load(DIR + "/clinc_use.npy")
import os
E5 = np.load(DIR + "/clinc_e5.npy") if os.path.exists(DIR + "/clinc_e5.npy") else None
from flows.nlu.encoder import shared_encoder
from flows.nlu.multilingual import MultilingualEncoder
enc = shared_encoder(1); ml = MultilingualEncoder()

def unit(x): return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)

def draw(seed, k=10, n_test_in=4000):
    by = defaultdict(list)
    for i, lab in enumerate(labels):
        by[lab].append(i)
    rng = random.Random(seed)
    tr, te = [], []
    for lab in sorted(by):
        xs = by[lab][:]; rng.shuffle(xs)
        if lab == "oos":
            te += xs; continue
        tr += xs[:k]; te_in = xs[k:]
        te += te_in
    te = np.array(te); tr = np.array(tr)
    ins = te[labels[te] != "oos"]; oos = te[labels[te] == "oos"]
    rs = np.random.RandomState(seed); ins = rs.choice(ins, min(n_test_in, len(ins)), replace=False)
    return tr, np.concatenate([ins, oos])

names = sorted(set(labels) - {"oos"})
anchor_txt = [label_text(n) for n in names]
A_EN = enc.encode(anchor_txt); A_USE = ml.encode(anchor_txt)

class Bundle:
    def __init__(self, idx, anchors=True):
        t = [texts[i] for i in idx]; y = list(labels[idx])
        an = Rows(anchor_txt, names, A_EN) if anchors else None
        self.en = TextClassifier(DEFAULT_RECIPE); self.en._fit_plain(Rows(t, y, EN[idx]) + (an or Rows([], [], np.zeros((0, 768), np.float32))))
        self.ml = TextClassifier(replace(DEFAULT_RECIPE, emb_weight=3.0)); self.ml._fit_plain(Rows(t, y, USE[idx]) + Rows(anchor_txt, names, A_USE))
        self.idx = idx; self.y = np.array(y, dtype=object)
        self.cls = np.array(self.en.classes_, dtype=object)
        # class means
        Y = np.searchsorted(self.cls, self.y)
        self.Y = Y
        self.mean_en = unit(np.stack([EN[idx][Y == c].mean(0) for c in range(len(self.cls))]))
        self.mean_use = unit(np.stack([USE[idx][Y == c].mean(0) for c in range(len(self.cls))]))
        # Mahalanobis, shared covariance with shrinkage, on EN
        X = EN[idx]; mu = np.stack([X[Y == c].mean(0) for c in range(len(self.cls))])
        R = X - mu[Y]; S = R.T @ R / len(R); lam = 0.5
        S = (1 - lam) * S + lam * np.trace(S) / S.shape[0] * np.eye(S.shape[0])
        self.W = np.linalg.cholesky(np.linalg.inv(S)).astype(np.float32); self.mu = mu; self.muW = mu @ self.W
        if E5 is not None:
            self.mean_e5 = unit(np.stack([E5[idx][Y == c].mean(0) for c in range(len(self.cls))]))

    def logits(self, clf, ts, emb):
        return emb @ clf._w_emb + np.asarray(clf._text_matrix(ts) @ clf._w_text) + clf._bias

    def scores(self, q):
        ts = [texts[i] for i in q]
        out = {}
        z = self.logits(self.en, ts, EN[q]); p = np.exp(z - z.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
        z2 = self.logits(self.ml, ts, USE[q]); p2 = np.exp(z2 - z2.max(1, keepdims=True)); p2 /= p2.sum(1, keepdims=True)
        ps = np.sort(p, 1)
        out["pred_en"] = p.argmax(1); out["pred_ml"] = p2.argmax(1)
        pa = (p + p2) / 2; out["pred_avg"] = pa.argmax(1)
        out["maxp"] = ps[:, -1]; out["margin"] = ps[:, -1] - ps[:, -2]
        out["energy"] = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
        out["maxlogit"] = z.max(1)
        out["maxp_ml"] = p2.max(1); out["maxp_avg"] = pa.max(1)
        out["energy_ml"] = np.log(np.exp(z2 - z2.max(1, keepdims=True)).sum(1)) + z2.max(1)
        out["agree"] = (p.argmax(1) == p2.argmax(1)).astype(float)
        out["p_ml_of_en"] = p2[np.arange(len(q)), p.argmax(1)]
        M = EN[self.idx]
        last, l3 = unit(EN[q][:, :384]), unit(EN[q][:, 384:])
        c_last = last @ unit(M[:, :384]).T; c_l3 = l3 @ unit(M[:, 384:]).T
        c_use = unit(USE[q]) @ unit(USE[self.idx]).T
        c_full = unit(EN[q]) @ unit(M).T
        out["cos_full"] = c_full.max(1); out["cos_last"] = c_last.max(1); out["cos_l3"] = c_l3.max(1); out["cos_use"] = c_use.max(1)
        # kNN: mean of top-3
        for nm, C in (("full", c_full), ("use", c_use)):
            out[f"knn3_{nm}"] = np.sort(C, 1)[:, -3:].mean(1)
        # cosine to predicted class's examples / mean
        pe = p.argmax(1)
        out["cmean_en"] = (unit(EN[q]) @ self.mean_en.T)[np.arange(len(q)), pe]
        out["cmean_en_max"] = (unit(EN[q]) @ self.mean_en.T).max(1)
        out["cmean_use"] = (unit(USE[q]) @ self.mean_use.T).max(1)
        xw = EN[q] @ self.W
        md = (xw ** 2).sum(1)[:, None] - 2 * xw @ self.muW.T + (self.muW ** 2).sum(1)[None]
        out["maha"] = -md.min(1)
        if E5 is not None:
            e = unit(E5[q]); c_e5 = e @ unit(E5[self.idx]).T
            out["cos_e5"] = c_e5.max(1); out["knn3_e5"] = np.sort(c_e5, 1)[:, -3:].mean(1)
            out["cmean_e5"] = (e @ self.mean_e5.T).max(1)
            out["pred_e5_knn"] = self.Y[c_e5.argmax(1)]
        out["pred_cls"] = np.array(self.cls)  # store
        return out

def run(seed):
    t0 = time.time(); print('start', seed, flush=True)
    tr, te = draw(seed)
    full = Bundle(tr)
    S_te = full.scores(te)
    # OOF
    oof = {}
    y = labels[tr]
    parts = []
    for f, (a, b) in enumerate(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(tr)), y)):
        bd = Bundle(tr[a]); s = bd.scores(tr[b]); print('fold', f, time.time() - t0, flush=True); parts.append((b, s, bd.cls))
    for k in S_te:
        if k == "pred_cls": continue
        arr = np.zeros(len(tr), S_te[k].dtype)
        for b, s, cls in parts:
            v = s[k]
            if k.startswith("pred"):
                v = np.searchsorted(full.cls, cls[v])
            arr[b] = v
        oof[k] = arr
    gold_te = np.array([np.searchsorted(full.cls, l) if l != "oos" else -1 for l in labels[te]])
    gold_tr = np.searchsorted(full.cls, labels[tr])
    np.savez(DIR + f"/scores_{seed}.npz", **{f"te_{k}": v for k, v in S_te.items() if k != "pred_cls"},
             **{f"oof_{k}": v for k, v in oof.items()}, gold_te=gold_te, gold_tr=gold_tr)
    print("seed", seed, "done", time.time() - t0, flush=True)

for s in map(int, sys.argv[1:]):
    run(s)
