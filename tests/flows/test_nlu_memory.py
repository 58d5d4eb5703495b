"""What a restart of the learned NLU loads (issue 20: idle RSS, time to ready) and that it answers the same.

A model trained into ``cache_dir`` is loaded by a fresh process, as ``omnibot run`` does after a
restart: it must answer every probe message exactly as the process that trained it, without
importing scikit-learn, loading the multilingual sentence model or the language detector's
models; those load with the first message that needs them. The n-gram analyzers a trained
model keeps instead of scikit-learn's vectorizers must give scikit-learn's n-grams.

Training data: the CLINC150 sample in tests/fixtures/nlu (licence there) and the demo flows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from flows.nlu.classifier import DEFAULT_RECIPE, Ngrams
from flows.nlu.service import LearnedNLU, read_labelled_csv

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"

PROBE = ["how many calories are in an egg", "what's the weather like tomorrow", "hi", "ok thanks",
         "I want to book a table for two tonight", "THIS IS THE THIRD TIME I ASK, where is my refund??",
         "¿cuántas calorías tiene una manzana?", "wie wird das Wetter morgen", "berapa kalori dalam telur",
         "tôi muốn đặt bàn cho hai người"]


def _texts() -> list[str]:
    texts = []
    for name in ("clinc_train.csv", "clinc_test.csv"):
        texts += read_labelled_csv(FIXTURES / "nlu" / name)[0]
    probe = yaml.safe_load((FIXTURES / "nlu_multilingual_probe.yaml").read_text())
    texts += [row[1] for rows in probe["languages"].values() for row in rows]
    # what the analyzers must get right beyond plain sentences
    texts += ["", "  ", "a", "ab", "I", "x  y\t\tz\n\nw", "Ça   coûte ÉNORMÉMENT", "ORDER #A-1042!!", "e-mail: a.b@c.de",
              "ok👍 thanks 🙏🙏", "straße STRASSE", "İstanbul", "ﬁle", "don't won't can't", "a_b c__d 3.14 1,000"]
    return texts


def _examples() -> dict[str, list[str]]:
    texts, labels = read_labelled_csv(FIXTURES / "nlu" / "clinc_train.csv")
    by: dict[str, list[str]] = defaultdict(list)
    for t, lab in zip(texts, labels):
        if lab != "oos":
            by[lab].append(t)
    return dict(by)


@pytest.mark.parametrize("char_min_df", [1, 2])
def test_ngrams_are_scikit_learns(char_min_df: int) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    from flows.nlu.classifier import TextClassifier

    texts = _texts()
    clf = TextClassifier(DEFAULT_RECIPE)
    clf.recipe = type(DEFAULT_RECIPE)(char_min_df=char_min_df, char_min_df_rows=1)
    clf._fit_text(texts)
    for vec in (clf._word, clf._char):
        assert isinstance(vec, TfidfVectorizer)
        ours = Ngrams.of(vec)
        assert ours is not None and ours.vocabulary_ == vec.vocabulary_
        theirs, mine = vec.build_analyzer(), ours.build_analyzer()
        for t in texts:
            assert mine(t) == theirs(t), t


def test_ngrams_refuse_a_vectorizer_they_do_not_reproduce() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(strip_accents="unicode").fit(["a text", "another text"])
    with pytest.raises(ValueError, match="unexpected vectorizer"):
        Ngrams.of(vec)


RESTART = r"""
import json, sys
from flows.nlu.service import LearnedNLU
examples, probe = json.loads(sys.stdin.read())
nlu = LearnedNLU(cache_dir=sys.argv[1], progress=lambda m: None)
nlu.fit(examples)
loaded = {"trained_now": nlu.trained_now, "sklearn": "sklearn" in sys.modules,
          "multilingual_model": nlu.ml_encoder.loaded}
from flows import language
loaded["lingua_detectors"] = language._detector.cache_info().currsize
answers = [[None if p is None else p.tolist(), s, c] for p, s, c in nlu.classify(probe)]
print(json.dumps({"loaded": loaded, "answers": answers, "after": {
    "multilingual_model": nlu.ml_encoder.loaded, "lingua_detectors": language._detector.cache_info().currsize}}))
"""


def test_a_restart_loads_only_what_answering_needs_and_answers_the_same(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.nlu import service

    # models an earlier test trained in this process would be reused, not trained here
    monkeypatch.setattr(service, "_memory", {})
    examples = _examples()
    nlu = LearnedNLU(cache_dir=tmp_path, progress=lambda m: None)
    nlu.fit(examples)
    assert nlu.trained_now == 3          # intents (English view, multilingual view), complaints
    here = nlu.classify(PROBE)
    p = subprocess.run([sys.executable, "-c", RESTART, str(tmp_path)], input=json.dumps([examples, PROBE]),
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr
    there = json.loads(p.stdout.strip().splitlines()[-1])
    assert there["loaded"] == {"trained_now": 0, "sklearn": False, "multilingual_model": False,
                               "lingua_detectors": 0}
    assert there["after"] == {"multilingual_model": True, "lingua_detectors": 1}   # foreign messages came
    for (probs, sure, comp), (probs2, sure2, comp2), text in zip(here, there["answers"], PROBE):
        assert np.array_equal(probs, np.array(probs2, np.float32)), text
        assert (sure, comp) == (sure2, pytest.approx(comp2, abs=1e-7)), text
