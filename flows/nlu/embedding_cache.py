"""Sentence embeddings of training examples, kept on disk by (model, text) (issue 18: training time).

A flows reload that changes a few intent examples retrains the classifiers (their cache key is all
the examples), but most examples are the ones the last training encoded: their embeddings are read
from ``<cache_dir>/embeddings-<model>.emb`` (a pickle; ``*.pkl`` are the trained models) and only
the new texts go through the model. Encoding is most of what a warm reload would otherwise repeat
(the English model ~2-4 ms a text, USE ~1 ms, e5 ~20 ms: 1,660 texts of CLINC150 150 x 10 take e5
~35 s on the first Vietnamese message), and a model whose texts are all known is not even loaded
(the multilingual one loads lazily).

A text's embedding is the model's for that text alone: the English model and e5 encode every text
alone, so a remembered embedding is the one a new encoding would give, bit for bit. USE encodes a
list in micro-batches, and its float rounding depends on the neighbours of a text in the batch (up
to 2.4e-7 on CLINC150 texts; a training from scratch already depends on the examples' order in the
same way): the cached embedding is one of those the model gives for it.

The file holds at most ``MAX_ROWS`` texts (the most recently used first; those of the training that
wrote it always fit): ~3 KB a text for the English model, so ~60 MB at most. A file that cannot be
read is ignored (the texts are encoded again) and a file that cannot be written only costs time.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import threading
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from . import cachefile

log = logging.getLogger(__name__)

MAX_ROWS = 20_000
_lock = threading.Lock()   # one read-modify-write of a file at a time in this process


class _Encoder(Protocol):
    model_id: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def path_for(cache_dir: Path, model_id: str) -> Path:
    return Path(cache_dir) / f"embeddings-{hashlib.sha256(model_id.encode()).hexdigest()[:24]}.emb"   # a pickle


def _read(path: Path, model_id: str) -> tuple[list[str], np.ndarray] | None:
    try:
        with open(path, "rb") as f:
            stored_id, texts, emb = pickle.load(f)   # our own cache directory, written below
        if stored_id != model_id or not isinstance(texts, list) or not isinstance(emb, np.ndarray) \
                or emb.ndim != 2 or len(texts) != len(emb):
            raise ValueError("not this model's embeddings")
        return texts, emb
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 - a bad cache file only costs encoding again
        log.warning("nlu embedding cache %s unusable (%s); encoding again", path, e)
        return None


def _write(path: Path, model_id: str, texts: list[str], emb: np.ndarray) -> None:
    cachefile.write(path, pickle.dumps((model_id, texts, emb), protocol=pickle.HIGHEST_PROTOCOL))


def encode(encoder: _Encoder, texts: Sequence[str], cache_dir: str | Path | None, *,
           max_rows: int = MAX_ROWS) -> tuple[np.ndarray, int]:
    """Embeddings of ``texts`` in order, and how many texts the model encoded (the others came from
    ``cache_dir``; without one, all are encoded)."""
    texts = list(texts)
    if cache_dir is None or not texts:
        return encoder.encode(texts), len(texts)
    path = path_for(Path(cache_dir), encoder.model_id)
    with _lock:
        known = _read(path, encoder.model_id)
    index = {t: i for i, t in enumerate(known[0])} if known else {}
    missing = list(dict.fromkeys(t for t in texts if t not in index))
    new = encoder.encode(missing) if missing else None
    dim = new.shape[1] if new is not None else known[1].shape[1]  # type: ignore[index]
    new_index = {t: i for i, t in enumerate(missing)}
    out = np.empty((len(texts), dim), np.float32)
    for r, t in enumerate(texts):
        j = new_index.get(t)
        out[r] = new[j] if j is not None else known[1][index[t]]  # type: ignore[index]
    # the file: this call's texts first (most recently used), then the others it held, up to max_rows
    keep = list(dict.fromkeys(texts))
    if known:
        mine = set(keep)
        keep += [t for t in known[0] if t not in mine][:max(0, max_rows - len(keep))]
    first = {t: r for r, t in reversed(list(enumerate(texts)))}
    rows = np.empty((len(keep), dim), np.float32)
    for r, t in enumerate(keep):
        rows[r] = out[first[t]] if t in first else known[1][index[t]]  # type: ignore[index]
    if missing or not known or keep != known[0]:
        with _lock:
            _write(path, encoder.model_id, keep, rows)
    return out, len(missing)
