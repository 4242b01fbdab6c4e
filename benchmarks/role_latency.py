"""Search latency with and without the role factor, on the pooled LongMemEval dev memory.

python benchmarks/role_latency.py  # expects runs/cache.db from the pooled run
"""

import statistics
import sys
import time

sys.path.insert(0, "benchmarks")
import retrieval_v2 as r

from engram import HYBRID
from engram.bench.longmemeval import load_longmemeval, to_pooled_unit
from engram.bench.systems import USER_ID, MemoEmbedder, make_embedder
from engram.embed import DiskCachedEmbedder

emb = MemoEmbedder(DiskCachedEmbedder(make_embedder(None), "runs/cache.db"), keep=10**6)
unit = to_pooled_unit(
    load_longmemeval("../shared/data/longmemeval/longmemeval_oracle_dev50.json").items
)
mem = r._build([unit], emb, False, None)[0]
cfgs = {"role 0.5": HYBRID, "role 0": HYBRID.with_(role_weight=0.0)}
for q in unit.questions[:3]:
    mem.search(q.text, user_id=USER_ID, limit=10, config=HYBRID, question_date=q.date)
times = {k: [] for k in cfgs}
for _ in range(3):
    for q in unit.questions:
        for k, c in cfgs.items():
            t = time.perf_counter()
            mem.search(q.text, user_id=USER_ID, limit=10, config=c, question_date=q.date)
            times[k].append(1000 * (time.perf_counter() - t))
for k, v in times.items():
    print(k, f"p50 {statistics.median(v):.1f} ms mean {statistics.fmean(v):.1f} ms")
