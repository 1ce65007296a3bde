"""SciFact (BEIR) through Hearth's real ingestion and search.

Indexes ../shared/data/scifact/corpus.jsonl into a collection over HTTP
(JSON documents, one ingestion job each), then runs the split's queries in
lexical, dense and hybrid mode and prints nDCG@10 and Recall@100 beside
the published figures. A document's rank is that of its best chunk.
Tune on ``--split train`` only; report ``--split test``.

    .venv/bin/python -m bench.scifact --base-url http://127.0.0.1:8000/v1
    .venv/bin/python -m bench.scifact --skip-ingest --split train \
        --modes hybrid --rrf-k 5 10 20 40 60 100          # choose k here
    .venv/bin/python -m bench.scifact --skip-ingest --rrf-k K --out bench/results
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

PUBLISHED = {"lexical": "BM25 0.665 (BEIR)", "dense": "MiniLM-L6 0.645 (MTEB)",
             "hybrid": "OpenAI file search 0.7165"}  # fmt: skip


def load(data: Path, split: str):
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").open()]
    queries = {}
    for line in (data / "queries.jsonl").open():
        row = json.loads(line)
        queries[row["_id"]] = row["text"]  # metadata holds gold evidence: unused
    qrels: dict[str, dict[str, int]] = {}
    for line in (data / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
        qid, did, score = line.strip().split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    return corpus, {q: queries[q] for q in qrels}, qrels


def ingest(client: httpx.Client, name: str, corpus: list[dict]) -> float:
    client.delete(f"/collections/{name}")
    made = client.post("/collections", json={"name": name})
    made.raise_for_status()
    started = time.perf_counter()
    for at in range(0, len(corpus), 250):
        docs = [
            {"filename": d["_id"], "title": d["title"] or None, "text": d["text"],
             "metadata": {"doc_id": d["_id"]}}
            for d in corpus[at : at + 250] if d["text"].strip()
        ]  # fmt: skip
        client.post(f"/collections/{name}/documents",
                    json={"documents": docs}).raise_for_status()  # fmt: skip
    while True:
        pending = sum(
            len(client.get(f"/collections/{name}/documents",
                           params={"state": s, "limit": 1000}).json()["data"])
            for s in ("queued", "processing")
        )  # fmt: skip
        if not pending:
            break
        time.sleep(2)
    return time.perf_counter() - started


def ndcg10(ranked: list[str], rel: dict[str, int]) -> float:
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(rel.values(), reverse=True)[:10]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def _one(client, name, text, mode, rrf_k) -> tuple[list[str], float]:
    started = time.perf_counter()
    reply = client.post(f"/collections/{name}/search", json={
        "query": text, "top_k": 100, "mode": mode, "rrf_k": rrf_k})  # fmt: skip
    latency = time.perf_counter() - started
    reply.raise_for_status()
    ranked: list[str] = []
    for hit in reply.json()["data"]:
        doc = hit["metadata"]["doc_id"]
        if doc not in ranked:
            ranked.append(doc)
    return ranked, latency


def run_mode(
    client, name, queries, qrels, mode, rrf_k, workers=1
) -> tuple[float, float, list]:
    # A few queries in flight let the embedding worker batch query vectors;
    # latencies then include that queueing.
    with ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(
            lambda text: _one(client, name, text, mode, rrf_k), queries.values()
        ))  # fmt: skip
    scores, recalls = [], []
    for qid, (ranked, _) in zip(queries, answers, strict=True):
        rel = qrels[qid]
        scores.append(ndcg10(ranked, rel))
        recalls.append(len(set(ranked[:100]) & set(rel)) / len(rel))
    latencies = sorted(latency for _, latency in answers)
    return sum(scores) / len(scores), sum(recalls) / len(recalls), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="hearth-local")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--collection", default="scifact")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--rrf-k", type=int, nargs="+", default=[60])
    parser.add_argument("--modes", nargs="+", default=["lexical", "dense", "hybrid"])
    parser.add_argument("--out", type=Path, help="write scifact.json and .md here")
    parser.add_argument("--workers", type=int, default=1, help="queries in flight")
    args = parser.parse_args()

    corpus, queries, qrels = load(args.data, args.split)
    headers = {"Authorization": f"Bearer {args.api_key}"}
    client = httpx.Client(base_url=args.base_url, timeout=120, headers=headers)
    report = {"split": args.split, "queries": len(queries), "corpus": len(corpus),
              "command": " ".join(["python -m bench.scifact", *sys.argv[1:]]),
              "results": []}  # fmt: skip
    if not args.skip_ingest:
        seconds = ingest(client, args.collection, corpus)
        report["ingest_docs_per_s"] = round(len(corpus) / seconds, 2)
        print(f"ingested {len(corpus)} abstracts in {seconds:.0f}s "
              f"({len(corpus) / seconds:.1f} docs/s)")  # fmt: skip
    print(f"split {args.split}: {len(queries)} queries")
    for mode in args.modes:
        for k in args.rrf_k if mode == "hybrid" else [60]:
            ndcg, recall, lat = run_mode(client, args.collection, queries, qrels,
                                         mode, k, args.workers)  # fmt: skip
            p50, p95 = lat[len(lat) // 2], lat[int(len(lat) * 0.95)]
            label = f"{mode}(k={k})" if mode == "hybrid" else mode
            print(f"{label:14} nDCG@10 {ndcg:.4f}  Recall@100 {recall:.4f}  "
                  f"p50 {p50 * 1000:.0f}ms p95 {p95 * 1000:.0f}ms  "
                  f"published: {PUBLISHED[mode]}", flush=True)  # fmt: skip
            report["results"].append({
                "mode": mode, "rrf_k": k if mode == "hybrid" else None,
                "ndcg_at_10": round(ndcg, 4), "recall_at_100": round(recall, 4),
                "p50_ms": round(p50 * 1000), "p95_ms": round(p95 * 1000),
                "published": PUBLISHED[mode],
            })  # fmt: skip
    if args.out:
        write(args.out, report)


def write(folder: Path, report: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scifact.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = [
        f"| {r['mode']} | {r['rrf_k'] or ''} | {r['ndcg_at_10']:.4f} "
        f"| {r['recall_at_100']:.4f} | {r['p50_ms']} | {r['published']} |"
        for r in report["results"]
    ]
    (folder / "scifact.md").write_text("\n".join([
        f"# SciFact ({report['split']}, {report['queries']} queries, "
        f"{report['corpus']} abstracts)", "",
        f"`{report['command']}`", "",
        "| mode | RRF k | nDCG@10 | Recall@100 | p50 ms | published |",
        "|---|---|---|---|---|---|", *rows, "",
    ]))  # fmt: skip


if __name__ == "__main__":
    main()
