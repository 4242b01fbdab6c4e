"""Where LoCoMo's evidence turns rank under a preset: the share of evidence turns found within
the top k, per category. The share within the top k is the ceiling of any reranker that reorders
the top k (recall@10 counts per question, this counts per evidence turn, so the two differ a
little).

    python benchmarks/locomo_ceiling.py --data ../shared/data/locomo/locomo_dev5.json
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from engram import PRESETS, Memory
from engram.bench.locomo import load_locomo, to_work_units

DEPTHS = (10, 20, 50, 100, 300, 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--preset", default="hybrid", choices=sorted(PRESETS))
    args = parser.parse_args()
    found: dict[str, list[int]] = defaultdict(list)  # category -> rank of each evidence turn
    for unit in to_work_units(load_locomo(args.data).samples):
        with Memory.open(":memory:") as mem:
            for s in unit.sessions:
                messages = [{"role": t.role, "content": t.text, "id": t.id, "name": t.name}
                            for t in s.turns if t.text.strip()]  # fmt: skip
                mem.add(messages, user_id="u", session_id=s.id, session_date=s.date)
            for q in unit.questions:
                hits = mem.search(q.text, user_id="u", limit=max(DEPTHS), config=args.preset,
                                  question_date=q.date)  # fmt: skip
                ranked = [m for h in hits for m in h.record.message_ids]
                for turn in q.turn_evidence:
                    rank = ranked.index(turn) + 1 if turn in ranked else max(DEPTHS) + 1
                    found[q.group].append(rank)
                    found["all"].append(rank)
    print("| category | evidence turns | " + " | ".join(f"in top {d}" for d in DEPTHS) + " |")
    print("|---|---:|" + "---:|" * len(DEPTHS))
    for group in sorted(found):
        ranks = found[group]
        shares = [sum(r <= d for r in ranks) / len(ranks) for d in DEPTHS]
        print(f"| {group} | {len(ranks)} | " + " | ".join(f"{x:.3f}" for x in shares) + " |")


if __name__ == "__main__":
    main()
