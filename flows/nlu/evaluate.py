"""``omnibot nlu eval`` and ``omnibot nlu complaint-eval``: train as flows do, score a test set.

Both print a human-readable report and then ONE final line of JSON (the
machine-readable result). Intent evaluation: rows labelled ``oos`` are out of
scope. They are never an intent; when the training set has some, they serve
only to place the confidence threshold (as ``nlu.out_of_scope`` examples do in
flows). A test message is predicted ``oos`` when the top intent's confidence
is below the calibrated threshold, or the message is unlike every training
example (see :mod:`flows.nlu.classifier`) — the message the bot would not guess on.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from typing import Callable, Sequence, TextIO

import numpy as np

from .service import COMPLAINT, NOT_COMPLAINT, LearnedNLU, read_labelled_csv

OOS = "oos"
LATENCY_SAMPLE = 200


def sample_shots(texts: Sequence[str], labels: Sequence[str], shots: int, seed: int) -> tuple[list[str], list[str]]:
    """``shots`` random examples per label (all of them when a label has fewer)."""
    by: dict[str, list[str]] = defaultdict(list)
    for t, lab in zip(texts, labels):
        by[lab].append(t)
    rng = random.Random(seed)
    out_t: list[str] = []
    out_l: list[str] = []
    for lab in sorted(by):
        rows = by[lab][:]
        rng.shuffle(rows)
        for t in rows[:shots]:
            out_t.append(t)
            out_l.append(lab)
    return out_t, out_l


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    labels = sorted(set(y_true) | set(y_pred))
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for t, p in zip(y_true, y_pred):
        if t == p:
            tp[t] += 1
        else:
            fp[p] += 1
            fn[t] += 1
    f1s = []
    for lab in labels:
        if lab not in set(y_true):
            continue  # a label only predicted, never true: its errors already count as fn elsewhere
        prec = tp[lab] / (tp[lab] + fp[lab]) if tp[lab] + fp[lab] else 0.0
        rec = tp[lab] / (tp[lab] + fn[lab]) if tp[lab] + fn[lab] else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return float(np.mean(f1s)) if f1s else 0.0


def _latency(nlu: LearnedNLU, texts: Sequence[str]) -> tuple[float, float]:
    """Per-message latency of one message alone (model + classifiers), in ms. The texts were just
    predicted: the encoder's memory of them is forgotten first, so each one runs the model."""
    sample = list(texts[:LATENCY_SAMPLE])
    nlu.classify(sample[:5])  # warm-up
    forget = getattr(nlu.encoder, "forget", lambda: None)
    times = []
    for t in sample:
        forget()
        t0 = time.perf_counter()
        nlu.classify([t])
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]


def _predict_all(nlu: LearnedNLU, texts: Sequence[str], say: Callable[[str], None]):
    out = []
    step = 256
    t0 = time.perf_counter()
    for i in range(0, len(texts), step):
        out.extend(nlu.classify(texts[i:i + step]))
        done = min(i + step, len(texts))
        if done == len(texts) or (i // step) % 8 == 7:
            say(f"predicted {done}/{len(texts)}")
    return out, len(texts) / max(time.perf_counter() - t0, 1e-9)


def _make_nlu(model: str, threads: int, say: Callable[[str], None]) -> LearnedNLU:
    from .encoder import shared_encoder

    return LearnedNLU(encoder=shared_encoder(threads, model), progress=say)


def _printer(err: TextIO) -> Callable[[str], None]:
    return lambda m: print(m, file=err, flush=True)


def _read_pair(train: str, test: str):
    return read_labelled_csv(train, what="training set"), read_labelled_csv(test, what="test set")


def evaluate_intents(train: str, test: str, *, shots: int | None = None, seed: int = 0,
                     nlu: LearnedNLU | None = None, model: str = "dynamic", threads: int = 2,
                     out: TextIO | None = None,
                     err: TextIO | None = None) -> dict:
    out = out or sys.stdout
    say = _printer(err or sys.stderr)
    (tr_t, tr_l), (te_t, te_l) = _read_pair(train, test)
    if shots is not None:
        if shots < 1:
            raise ValueError("--shots must be at least 1")
        tr_t, tr_l = sample_shots(tr_t, tr_l, shots, seed)
    examples: dict[str, list[str]] = defaultdict(list)
    oos_train: list[str] = []
    for t, lab in zip(tr_t, tr_l):
        (oos_train if lab == OOS else examples[lab]).append(t)
    if len(examples) < 2:
        raise ValueError(f"training set {train}: needs at least two labels other than {OOS!r}")
    nlu = nlu or _make_nlu(model, threads, say)
    t0 = time.perf_counter()
    nlu.fit(dict(examples), out_of_scope=oos_train)
    train_s = time.perf_counter() - t0
    say(f"predicting {len(te_t)} test messages")
    results, per_s = _predict_all(nlu, te_t, say)
    p50, p99 = _latency(nlu, te_t)
    classes = nlu.intents.classes_  # type: ignore[union-attr]
    has_oos = OOS in te_l or bool(oos_train)
    thr = nlu.threshold
    pred, closed = [], []
    for probs, sure, _ in results:
        i = int(np.argmax(probs))
        pred.append(OOS if has_oos and not sure else classes[i])
        closed.append(classes[i])
    n = len(te_l)
    acc = sum(p == t for p, t in zip(pred, te_l)) / n
    res = {"task": "intents", "accuracy": round(acc, 4), "macro_f1": round(macro_f1(te_l, pred), 4),
           "n_test": n, "n_train": len(tr_t), "labels": len(examples),
           "p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "msgs_per_s_batched": round(per_s, 1),
           "train_s": round(train_s, 2), "threshold": round(thr, 4),
           "cos_threshold": round(nlu.cos_threshold, 4), "shots": shots, "seed": seed}
    unseen = sorted(set(te_l) - set(examples) - {OOS})
    if OOS in te_l:
        ins = [(p, t) for p, t in zip(pred, te_l) if t != OOS]
        oos = [p for p, t in zip(pred, te_l) if t == OOS]
        res["inscope_accuracy"] = round(sum(p == t for p, t in ins) / max(len(ins), 1), 4)
        # the same rows if the bot never said "did you mean": what the classifier alone gets right
        res["inscope_accuracy_closed"] = round(sum(c == t for c, t in zip(closed, te_l) if t != OOS)
                                               / max(len(ins), 1), 4)
        res["oos_recall"] = round(sum(p == OOS for p in oos) / max(len(oos), 1), 4)
        res["n_oos"] = len(oos)
    _report(res, out, unseen=unseen, oos_train=len(oos_train))
    return res


def evaluate_complaints(train: str, test: str, *, nlu: LearnedNLU | None = None,
                        model: str = "dynamic", threads: int = 2,
                        out: TextIO | None = None, err: TextIO | None = None) -> dict:
    out = out or sys.stdout
    say = _printer(err or sys.stderr)
    (tr_t, tr_l), (te_t, te_l) = _read_pair(train, test)
    for what, labels, path in (("training set", tr_l, train), ("test set", te_l, test)):
        bad = sorted(set(labels) - {COMPLAINT, NOT_COMPLAINT})
        if bad:
            raise ValueError(f"{what} {path}: labels must be {COMPLAINT} or {NOT_COMPLAINT}, found {bad[:5]}")
    if len(set(tr_l)) < 2:
        raise ValueError(f"training set {train}: needs both {COMPLAINT} and {NOT_COMPLAINT} rows")
    nlu = nlu or _make_nlu(model, threads, say)
    t0 = time.perf_counter()
    nlu.fit_complaints([t for t, lab in zip(tr_t, tr_l) if lab == COMPLAINT],
                       [t for t, lab in zip(tr_t, tr_l) if lab == NOT_COMPLAINT], use_default=False)
    train_s = time.perf_counter() - t0
    results, per_s = _predict_all(nlu, te_t, say)
    p50, p99 = _latency(nlu, te_t)
    thr = nlu.complaint_threshold
    pred = [COMPLAINT if score >= thr else NOT_COMPLAINT for _, _, score in results]
    n = len(te_l)
    tp = sum(p == t == COMPLAINT for p, t in zip(pred, te_l))
    prec = tp / max(sum(p == COMPLAINT for p in pred), 1)
    rec = tp / max(sum(t == COMPLAINT for t in te_l), 1)
    res = {"task": "complaints", "accuracy": round(sum(p == t for p, t in zip(pred, te_l)) / n, 4),
           "macro_f1": round(macro_f1(te_l, pred), 4), "n_test": n, "n_train": len(tr_t),
           "complaint_precision": round(prec, 4), "complaint_recall": round(rec, 4),
           "p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "msgs_per_s_batched": round(per_s, 1),
           "train_s": round(train_s, 2), "threshold": round(thr, 4)}
    _report(res, out)
    return res


def _report(res: dict, out: TextIO, *, unseen: Sequence[str] = (), oos_train: int = 0) -> None:
    import json

    w = lambda s="": print(s, file=out)  # noqa: E731
    if res["task"] == "intents":
        w(f"Intent matching: {res['labels']} intents, {res['n_train']} training rows"
          + (f" ({res['shots']} per label, seed {res['seed']})" if res.get("shots") else "")
          + (f", {oos_train} out-of-scope rows used for the threshold" if oos_train else ""))
    else:
        w(f"Complaint detection: {res['n_train']} training rows")
    w(f"  test messages      {res['n_test']}")
    w(f"  accuracy           {res['accuracy'] * 100:.2f} %")
    w(f"  macro F1           {res['macro_f1'] * 100:.2f}")
    if "inscope_accuracy" in res:
        w(f"  in-scope accuracy  {res['inscope_accuracy'] * 100:.2f} % "
          f"({res['inscope_accuracy_closed'] * 100:.2f} % if it never declined to guess)")
        w(f"  out-of-scope recall {res['oos_recall'] * 100:.2f} % ({res['n_oos']} messages)")
    if "complaint_precision" in res:
        w(f"  complaint precision {res['complaint_precision'] * 100:.2f} %, recall {res['complaint_recall'] * 100:.2f} %")
    w(f"  threshold          {res['threshold']:.3f}"
      + (f" (similarity {res['cos_threshold']:.3f})" if "cos_threshold" in res else ""))
    w(f"  latency, one message  p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms")
    w(f"  batched throughput {res['msgs_per_s_batched']:.0f} messages/s")
    w(f"  training           {res['train_s']:.2f} s")
    if unseen:
        w(f"  note: {len(unseen)} test label(s) have no training rows (always wrong): {', '.join(unseen[:5])}")
    w(json.dumps(res, sort_keys=True))
