"""mtlfast.data: compiled (Cython, ``mtlfast.data._fast``) vs pure Python/NumPy, side by side in one run.

Cases
  parse        : TSV text -> sentences for every split of the suite (the reader's inner loop);
                 Cython parse_tsv on raw bytes vs UTF-8 decode + the pure-Python parser.
  encode       : encode_suite (shared vocabulary by frequency + flat int32 arrays) on already loaded tasks.
  load+encode  : load_suite + encode_suite, what a sweep does once at start.
  lookup       : a flat list of token strings -> int32 ids (lower-cased dict lookup).
  glove        : load_embeddings of a GloVe text file (default: a generated 20,000 x 50 file in GloVe's
                 5-significant-digit spelling; --glove PATH for a real one), all words; Cython number parser
                 vs NumPy's conversion.
  batch        : one right-padded [32, T] batch of random training sentences cut to 30 tokens (done every
                 training step); Cython vs vectorised NumPy vs a plain Python loop (how the baseline built
                 batches).

Profile first (``--profile`` prints where the pure path of load+encode spends its time). Prints medians and the
ratio pure / compiled, and writes bench/out/bench_data.csv with the configuration and machine. Never asserts a
time. Examples:
    python bench/bench_data.py                       # the generated default suite
    python bench/bench_data.py --data ../shared/data # the ten real tasks
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mtlfast.data import encode as E  # noqa: E402
from mtlfast.data import io as IO  # noqa: E402
from mtlfast.data import encode_suite, load_suite  # noqa: E402
from mtlfast.data.synthetic import generate_suite  # noqa: E402


def machine() -> str:
    from mtlfast.ops.dispatch import cpu_features

    model = cpu_features()["model"]
    return f"{model}; {os.cpu_count()} cpus; python {platform.python_version()}; numpy {np.__version__}"


def bench(fn, repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextlib.contextmanager
def pure_python():
    """Temporarily disable the compiled helpers (what a checkout without the Cython build runs)."""
    saved = (E._fast, IO._fast)
    E._fast = IO._fast = None
    try:
        yield
    finally:
        E._fast, IO._fast = saved


def python_loop_batch(tokens, tags, offsets, idx, max_len):
    """Batches as a plain Python training loop builds them: lists, then one array conversion."""
    rows_tok, rows_tag, lengths = [], [], []
    for i in idx.tolist():
        a, b = int(offsets[i]), int(offsets[i + 1])
        b = min(b, a + max_len)
        rows_tok.append(tokens[a:b].tolist())
        rows_tag.append(tags[a:b].tolist())
        lengths.append(b - a)
    T = max(lengths)
    tok = np.array([r + [0] * (T - len(r)) for r in rows_tok], dtype=np.int64)
    tag = np.array([r + [E.PAD_TAG] * (T - len(r)) for r in rows_tag], dtype=np.int64)
    return tok, tag, np.array(lengths, dtype=np.int64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="suite folder (default: generate the default synthetic suite in a temp dir)")
    ap.add_argument("--repeat", type=int, default=5, help="timed repeats of the whole-suite cases (median)")
    ap.add_argument("--batch-repeat", type=int, default=2000, help="timed batches per batch measurement")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=30)
    ap.add_argument("--glove", help="GloVe text file for the glove case (default: generate 20,000 x 50)")
    ap.add_argument("--profile", action="store_true", help="cProfile the pure path of load+encode first")
    ap.add_argument("--csv", default=str(HERE / "out" / "bench_data.csv"))
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    if E._fast is None:
        print("mtlfast.data._fast is not built: MTLFAST_ONLY=cython python setup.py build_ext --inplace")
        return 1
    tmp = None
    if args.data:
        data = Path(args.data)
    else:
        tmp = tempfile.TemporaryDirectory()
        data = Path(tmp.name)
        generate_suite(data, seed=0)
    tasks = load_suite(data)
    n_tok = sum(sp.n_tokens for t in tasks for sp in t.splits.values())
    n_sent = sum(sp.n_sentences for t in tasks for sp in t.splits.values())
    desc = f"{data} ({len(tasks)} tasks, {n_sent} sentences, {n_tok} tokens)"
    mach = machine()
    print(f"data: {desc}\nmachine: {mach}\n")

    if args.profile:
        import cProfile
        import pstats

        with pure_python():
            prof = cProfile.Profile()
            prof.enable()
            encode_suite(load_suite(data))
            prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(8)

    rows = []

    def record(case, items, unit, results):
        base = results["cython"]
        for impl, sec in results.items():
            rows.append(dict(case=case, impl=impl, median_s=f"{sec:.6g}", per_item_ns=f"{sec / items * 1e9:.4g}",
                             ratio_vs_cython=f"{sec / base:.3g}", items=items, unit=unit))
        others = ", ".join(f"{k} {v * 1e3:.3f} ms ({v / base:.2f}x)" for k, v in results.items() if k != "cython")
        print(f"{case:<12} cython {base * 1e3:.3f} ms | {others}   [{items} {unit}]")

    blobs = [(sp.path.read_bytes(), sp.path) for t in tasks for sp in t.splits.values()]
    import mtlfast.data._fast as F

    def parse_fast():
        with IO._gc_paused():  # as load_task does
            for data_b, _ in blobs:
                F.parse_tsv(data_b)

    def parse_py():
        with IO._gc_paused():
            for data_b, p in blobs:
                IO.parse_tsv(IO._decode(p, data_b), p)

    record("parse", n_tok, "tokens", {"cython": bench(parse_fast, args.repeat), "python": bench(parse_py, args.repeat)})

    t_c = bench(lambda: encode_suite(tasks), args.repeat)
    with pure_python():
        t_p = bench(lambda: encode_suite(tasks), args.repeat)
    record("encode", n_tok, "tokens", {"cython": t_c, "python/numpy": t_p})

    t_c = bench(lambda: encode_suite(load_suite(data)), args.repeat)
    with pure_python():
        t_p = bench(lambda: encode_suite(load_suite(data)), args.repeat)
    record("load+encode", n_tok, "tokens", {"cython": t_c, "python/numpy": t_p})

    from mtlfast.data import embeddings as EM

    glove = args.glove
    if glove is None:
        gdir = tempfile.TemporaryDirectory()
        glove = os.path.join(gdir.name, "glove.txt")
        g = np.random.default_rng(0).normal(0, 0.4, size=(20000, 50))
        with open(glove, "w") as fh:
            for i, row in enumerate(g):
                fh.write(f"w{i} " + " ".join(f"{v:.5g}" for v in row) + "\n")
    t_c = bench(lambda: EM.load_embeddings(glove), args.repeat)
    saved = EM._fast
    EM._fast = None
    try:
        t_p = bench(lambda: EM.load_embeddings(glove), args.repeat)
    finally:
        EM._fast = saved
    n_vec = len(EM.load_embeddings(glove))
    record("glove", n_vec, f"vectors ({glove})", {"cython": t_c, "numpy": t_p})

    suite = encode_suite(tasks)
    flat = [w for t in tasks for s in t.train.tokens for w in s]
    stoi = suite.vocab.stoi
    record("lookup", len(flat), "tokens", {
        "cython": bench(lambda: F.encode_tokens(flat, stoi, True, 1), args.repeat),
        "python": bench(lambda: E.encode_tokens_py(flat, stoi, True, 1), args.repeat),
    })

    biggest = max(tasks, key=lambda t: t.train.n_sentences).name
    es = suite.tasks[biggest].splits["train"]
    rng = np.random.default_rng(0)
    idxs = [rng.integers(0, es.n_sentences, args.batch_size).astype(np.int64) for _ in range(args.batch_repeat)]

    def loop(fn):
        def run():
            for idx in idxs:
                fn(es.tokens, es.tags, es.offsets, idx, args.max_len)
        return run

    n_b = args.batch_repeat
    res = {
        "cython": bench(loop(F.make_batch), 5),
        "numpy": bench(loop(E.make_batch_np), 5),
        "python-loop": bench(loop(python_loop_batch), 5),
    }
    record("batch", n_b, f"batches of {args.batch_size} (task {biggest}, max_len {args.max_len})", res)
    with pure_python():
        public_np = bench(lambda: [E.make_batch(es, i, args.max_len) for i in idxs], 5)
    public_c = bench(lambda: [E.make_batch(es, i, args.max_len) for i in idxs], 5)
    record("make_batch", n_b, "public calls incl. index checks", {"cython": public_c, "numpy": public_np})

    out = Path(args.csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]) + ["data", "machine", "repeat"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "data": desc, "machine": mach, "repeat": args.repeat})
    print(f"\nwrote {out}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
