# Candidate out-of-scope scores, issue 18 (see flows/nlu/README.md). Embeddings and scores are cached
# in $OOS_STUDY_DIR (default /tmp/nlu-oos): embed.py en|use|e5, then study.py 0 1 2, analyze.py 0 1 2.
import os
DIR = os.environ.get("OOS_STUDY_DIR", "/tmp/nlu-oos")
import sys, numpy as np
seeds = [int(s) for s in sys.argv[1:]] or [0]
def load(s):
    d = np.load(DIR + f"/scores_{s}.npz"); return {k: d[k] for k in d.files}
def curve(score, correct, is_oos, targets=(0.8, 0.85, 0.9, 0.95)):
    """in-scope answered-right at given oos decline rates (threshold set on the oos rows: oracle)."""
    so = np.sort(score[is_oos]); out = {}
    for t in targets:
        thr = so[int(np.ceil(t * len(so))) - 1] if t < 1 else so[-1]
        thr = np.nextafter(thr, np.inf)  # decline <= thr... accept score > thr
        acc = np.mean(correct[~is_oos] & (score[~is_oos] >= thr))
        out[t] = acc
    return out
def z(train_vals, v):  # in-scope OOF-based standardisation
    return (v - np.median(train_vals)) / (np.quantile(train_vals, 0.75) - np.quantile(train_vals, 0.25) + 1e-9)
def ecdf(train_vals, v):
    s = np.sort(train_vals); return np.searchsorted(s, v, side="right") / len(s)
res = {}; cal = {}
for s in seeds:
    d = load(s); gold = d["gold_te"]; is_oos = gold < 0
    for pk in ["pred_en", "pred_ml", "pred_avg"] + (["pred_e5_knn"] if "te_pred_e5_knn" in d else []):
        acc = np.mean(d["te_" + pk][~is_oos] == gold[~is_oos]); res.setdefault("closed_acc_" + pk, []).append(acc)
    correct = d["te_pred_en"] == gold
    keys = [k[3:] for k in d if k.startswith("te_") and not k.startswith("te_pred")]
    cands = {k: d["te_" + k] for k in keys}
    oof = {k: d["oof_" + k] for k in keys}
    # combos: rank-normalised (ECDF on OOF) min / mean
    def combo(names, how):
        vals = [ecdf(oof[n], cands[n]) for n in names]
        return np.min(vals, 0) if how == "min" else np.mean(vals, 0)
    def zc_oof(names):
        return np.mean([z(oof[n], oof[n]) for n in names], 0)
    def zc(names):
        return np.mean([z(oof[n], cands[n]) for n in names], 0)
    extra = {
        "min(maxp,cos_full)": combo(["maxp", "cos_full"], "min"),
        "mean(maxp,cos_full)": combo(["maxp", "cos_full"], "mean"),
        "z(maxp,cos_use)": zc(["maxp", "cos_use"]),
        "z(maxp,cmean)": zc(["maxp", "cmean_en_max"]),
        "z(cmean,knn3_use)": zc(["cmean_en_max", "knn3_use"]),
        "z(maxp,cmean,knn3_use)": zc(["maxp", "cmean_en_max", "knn3_use"]),
        "z(maxp,cmean,cmean_use)": zc(["maxp", "cmean_en_max", "cmean_use"]),
        "z(cmean,cmean_use)": zc(["cmean_en_max", "cmean_use"]),
        "z(maxp,cmean,maha)": zc(["maxp", "cmean_en_max", "maha"]),
        "min(maxp,cmean)": combo(["maxp", "cmean_en_max"], "min"),
        "z(maxp,knn3_use)": zc(["maxp", "knn3_use"]),
        "z(maxp,knn3_use,knn3_full)": zc(["maxp", "knn3_use", "knn3_full"]),
        "z(maxlogit,knn3_use,knn3_full)": zc(["maxlogit", "knn3_use", "knn3_full"]),
        "z(energy,knn3_use)": zc(["energy", "knn3_use"]),
        "z(maxp,maxp_ml)": zc(["maxp", "maxp_ml"]),
        "z(maxp,p_ml_of_en)": zc(["maxp", "p_ml_of_en"]),
        "z(maxp,p_ml_of_en,knn3_use)": zc(["maxp", "p_ml_of_en", "knn3_use"]),
        "z(maxp,maha)": zc(["maxp", "maha"]),
        "z(margin,knn3_use)": zc(["margin", "knn3_use"]),
    }
    if "cos_e5" in cands:
        extra["z(maxp,knn3_e5)"] = zc(["maxp", "knn3_e5"])
        extra["z(maxp,p_ml_of_en,knn3_e5)"] = zc(["maxp", "p_ml_of_en", "knn3_e5"])
        extra["z(maxp,knn3_e5,knn3_use)"] = zc(["maxp", "knn3_e5", "knn3_use"])
    cands.update(extra)
    Q = (0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2)
    calib = {"cmean_en_max": oof["cmean_en_max"], "z(maxp,cmean)": zc_oof(["maxp", "cmean_en_max"]),
             "z(maxp,cmean,knn3_use)": zc_oof(["maxp", "cmean_en_max", "knn3_use"]),
             "z(maxp,knn3_use,knn3_full)": zc_oof(["maxp", "knn3_use", "knn3_full"]),
             "z(maxp,maha)": zc_oof(["maxp", "maha"]), "z(maxp,cmean,maha)": zc_oof(["maxp", "cmean_en_max", "maha"])}
    for k, o in calib.items():
        for q in Q:
            t = np.quantile(o, q); v = cands[k]
            cal.setdefault((k, q), []).append((np.mean(correct[~is_oos] & (v[~is_oos] >= t)), np.mean(v[is_oos] < t)))
    for k, v in cands.items():
        c = curve(v.astype(float), correct, is_oos)
        res.setdefault(k, []).append([c[t] for t in (0.8, 0.85, 0.9, 0.95)])
for k in [k for k in res if k.startswith("closed")]:
    print(f"{k:40s} {np.mean(res[k])*100:.2f}")
print(f"{'score':40s} in-scope right at oos declined 80/85/90/95 %")
for k, v in sorted(((k, v) for k, v in res.items() if not k.startswith("closed")), key=lambda kv: -np.mean(kv[1], 0)[2]):
    m = np.mean(v, 0) * 100
    print(f"{k:40s} " + " ".join(f"{x:6.2f}" for x in m))

print("calibrated on in-scope OOF quantile q: in-scope right / oos declined")
for (k, q), v in cal.items():
    m = np.mean(v, 0) * 100
    print(f"{k:30s} q={q:<6} {m[0]:6.2f} {m[1]:6.2f}")
