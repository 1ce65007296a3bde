"""Retrieval benchmark, end to end: SciFact through Hearth's real ingestion.

    make bench-retrieval                               # all 5,183 abstracts
    make bench-retrieval ARGS="--limit-docs 300"       # a quick check
    python -m bench.retrieval --base-url http://127.0.0.1:8000/v1 \\
        --database-url postgresql://...                 # a running Hearth

Without --base-url it starts its own ``hearth up`` (as ``make bench`` does)
in a temporary data directory, with the same torch threads as the raw
baseline. It uploads the corpus over HTTP (one ingestion job per abstract)
and reports:

- nDCG@10 and Recall@100 of lexical, dense and hybrid search on the test
  queries, beside the published figures;
- ingestion throughput in chunks/s through the pipeline (upload to the last
  document indexed) against sentence-transformers embedding the very same
  chunk texts in one process, batched (a sample of ``--raw-sample``);
- search latency p50/p95 without the query embedding (vectors computed
  beforehand; ``retrieval.search.search`` timed against the database) on
  the SciFact collection and on a synthetic collection of
  ``--synthetic-chunks`` (copies of SciFact's chunks with jittered vectors,
  inserted directly into the store).

With ``--limit-docs N`` the corpus is the relevant abstracts of the first
test queries (up to a third of N) plus random others, and only queries
with a relevant abstract in it are scored: a check that everything works,
not a figure to compare with the published ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import scifact

RESULTS = Path(__file__).parent / "results"
PUBLISHED = {
    "lexical": "BM25 0.665 (BEIR)",
    "dense": "all-MiniLM-L6-v2 0.645 (MTEB)",
    "hybrid": "OpenAI file search 0.7165",
}
MODES = ("lexical", "dense", "hybrid")
LATENCY_TOP_K = 10
_SEED = 13


def eval_data() -> Path:
    root = os.environ.get("HEARTH_EVAL_DATA")
    if root:
        return (Path(root) / "scifact").resolve()
    return (
        Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
    ).resolve()


def subset(corpus, queries, qrels, limit: int | None):
    """The corpus cut to ``limit`` abstracts, and the queries it can answer."""
    if not limit or limit >= len(corpus):
        return corpus, queries, qrels
    by_id = {d["_id"]: d for d in corpus}
    chosen: dict[str, dict] = {}
    for qid in qrels:
        wanted = [d for d in qrels[qid] if d in by_id and d not in chosen]
        if len(chosen) + len(wanted) > limit // 3:
            break
        chosen.update((d, by_id[d]) for d in wanted)
    others = [d for d in corpus if d["_id"] not in chosen]
    random.Random(_SEED).shuffle(others)
    for doc in others[: limit - len(chosen)]:
        chosen[doc["_id"]] = doc
    kept = {
        qid: {d: s for d, s in rel.items() if d in chosen} for qid, rel in qrels.items()
    }
    kept = {qid: rel for qid, rel in kept.items() if rel}
    return list(chosen.values()), {q: queries[q] for q in kept}, kept


# The stack.


def start_hearth(threads: int, extra_env: dict[str, str]):
    from tests.stackutil import Processes, base_env, free_port, wait_ready

    root = Path(tempfile.mkdtemp(prefix="hearth-bench-retrieval-"))
    port = free_port()
    env = base_env(
        HEARTH_DATA_DIR=str(root / "data"), HEARTH_TORCH_THREADS=str(threads),
        **extra_env,
    )  # fmt: skip
    processes = Processes(logdir=root, env=env)
    processes.start("up", "up", "--port", str(port))
    wait_ready(f"http://127.0.0.1:{port}", processes)
    from server.embedded_postgres import database_url

    ports = json.loads((root / "data" / "ports.json").read_text())
    return f"http://127.0.0.1:{port}/v1", database_url(ports["postgres"]), processes


# Ingestion throughput, and where the CPU goes.


def _role(command: list[str]) -> str:
    line = " ".join(command)
    if "--models" in command:
        return f"worker {command[command.index('--models') + 1]}"
    for role in ("valkey", "postgres", "beat", "api", "up"):
        if role in line:
            return "supervisor" if role == "up" else role
    return "other"


def stack_cpu(root_pid: int) -> dict[str, float]:
    """CPU seconds used so far by each role of the stack under ``root_pid``
    (finished children, such as parser sandboxes and PostgreSQL backends,
    count in their parent)."""
    import psutil

    root = psutil.Process(root_pid)
    totals: dict[str, float] = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            times, command = proc.cpu_times(), proc.cmdline()
        except psutil.Error:
            continue
        role = _role(command)
        used = times.user + times.system + times.children_user + times.children_system
        totals[role] = totals.get(role, 0.0) + used
    return totals


def documents(client: httpx.Client, name: str) -> list[dict]:
    rows, after = [], None
    while True:
        params = {"limit": 1000, **({"after": after} if after else {})}
        page = client.get(f"/collections/{name}/documents", params=params).json()
        rows += page["data"]
        if not page["has_more"]:
            return rows
        after = rows[-1]["id"]


def chunk_texts(corpus: list[dict], collection: dict) -> list[str]:
    """What the pipeline embeds for these abstracts, made by the same code:
    the parser, the chunker and the context line before each chunk."""
    from retrieval import chunking
    from retrieval.parsers import parse

    texts = []
    for doc in corpus:
        if not doc["text"].strip():
            continue
        parsed = parse(doc["text"].encode(), doc["_id"])
        title = doc["title"] or parsed.title
        chunks = chunking.chunk(
            parsed, target=collection["chunk_tokens"],
            overlap=collection["chunk_overlap"],
        )  # fmt: skip
        texts += [f"{c.context(title)}\n{c.text}".strip() for c in chunks]
    return texts


class Raw:
    """sentence-transformers in this process: the baseline."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        from workers.specs import MINILM, ModelCatalog

        spec = ModelCatalog.load(models_file=None).get(MINILM)
        self.model = SentenceTransformer(str(spec.path), device="cpu")

    def rate(self, texts: list[str]) -> tuple[float, float]:
        """Chunks per second, and CPU seconds per chunk."""
        self.model.encode(texts[:16], batch_size=16)
        started, cpu = time.perf_counter(), time.process_time()
        self.model.encode(texts, batch_size=64, normalize_embeddings=True)
        cpu = time.process_time() - cpu
        return len(texts) / (time.perf_counter() - started), cpu / len(texts)

    def vectors(self, texts: list[str]) -> list[list[float]]:
        rows = self.model.encode(texts, batch_size=64, normalize_embeddings=True)
        return [row.tolist() for row in rows]


def batch_sizes(base_url: str) -> dict[str, float]:
    """The embedding engine's forward passes so far, from /metrics."""
    root = base_url.rstrip("/").removesuffix("/v1")
    text = httpx.get(f"{root}/metrics", timeout=30).text
    values = {}
    for kind in ("sum", "count"):
        match = re.search(
            rf"^hearth_embedding_batch_size_{kind}\{{[^}}]*\}} (\S+)$", text, re.M
        )
        values[kind] = float(match.group(1)) if match else 0.0
    return values


# Search latency without the query embedding.


async def latencies(
    database_url: str, *, tenant: str, collection: str, queries: list[str],
    vectors: list[list[float]], rrf_k: int,
) -> dict[str, dict[str, float]]:  # fmt: skip
    import asyncpg

    from retrieval import search

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    report = {}
    try:
        for mode in MODES:
            timings = []
            for at, (text, vector) in enumerate(zip(queries, vectors, strict=True)):
                started = time.perf_counter()
                await search.search(
                    pool, tenant=tenant, collections=[collection], query=text,
                    vector=vector, mode=mode, top_k=LATENCY_TOP_K, where=None,
                    rrf_k=rrf_k,
                )  # fmt: skip
                if at >= min(5, len(queries) - 1):  # the first warm the caches
                    timings.append(time.perf_counter() - started)
            report[mode] = percentiles(timings)
    finally:
        await pool.close()
    return report


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
                        * 1000, 1),
    }  # fmt: skip


async def synthesize(
    database_url: str, *, tenant: str, source: str, target: str, count: int
) -> float:
    """Fill collection ``target`` with ``count`` chunks copied from
    ``source``, each vector jittered so that no two are equal; seconds."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    started = time.perf_counter()
    try:
        per_doc = 10
        await conn.execute(
            "INSERT INTO documents (id, tenant, collection_id, filename, title,"
            " metadata, content_sha256, indexed_sha256, bytes, format, state,"
            " stage, chunk_count)"
            " SELECT 'syn_' || $2 || '_' || g, $1, $2, 'synthetic-' || g, NULL,"
            " '{}'::jsonb, md5(g::text), md5(g::text), 0, 'text', 'ready', 'done', $3"
            " FROM generate_series(0, $4 - 1) g",
            tenant, target, per_doc, (count + per_doc - 1) // per_doc,
        )  # fmt: skip
        # In slices, so that progress shows and no transaction is huge.
        step = 5000
        for at in range(0, count, step):
            await conn.execute(
                "WITH src AS (SELECT row_number() OVER (ORDER BY id) - 1 AS n, *"
                "  FROM chunks WHERE collection_id = $2),"
                " total AS (SELECT count(*) AS n FROM src)"
                " INSERT INTO chunks (tenant, collection_id, document_id, ordinal,"
                " text, context, section, page_start, page_end, char_start,"
                " char_end, tokens, embedding, tsv)"
                " SELECT $1, $3, 'syn_' || $3 || '_' || (g / $6), g % $6, s.text,"
                " s.context, s.section, NULL, NULL, s.char_start, s.char_end,"
                # The noise refers to g so that it is drawn for every row,
                # not once for the statement, and to i so that the
                # aggregate is the subquery's.
                " s.tokens, s.embedding + (SELECT array_agg((random() - 0.5) * 0.04"
                "   + 0 * (i + g)) FROM generate_series(1, 384) i)::vector(384),"
                " s.tsv"
                " FROM generate_series($4::bigint, $5::bigint - 1) g"
                " JOIN src s ON s.n = g % (SELECT n FROM total)",
                tenant, source, target, at, min(count, at + step), per_doc,
            )  # fmt: skip
            print(f"  synthetic chunks: {min(count, at + step)}/{count}", flush=True)
        # Statistics and visibility maps as autovacuum leaves them after a
        # bulk load; without the latter the postings' index-only scans
        # visit the heap.
        await conn.execute("VACUUM ANALYZE chunks, lexical_terms, lexical_postings")
    finally:
        await conn.close()
    return time.perf_counter() - started


# The run.


def main() -> None:
    args = _arguments()
    import torch

    torch.set_num_threads(args.threads)
    # A SIGTERM (a timeout, say) must still stop the stack we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    processes = None
    base, database_url = args.base_url, args.database_url
    if base is None:
        print(f"starting hearth up (torch threads {args.threads})", flush=True)
        extra = dict(item.split("=", 1) for item in args.stack_env)
        base, database_url, processes = start_hearth(args.threads, extra)
    report = None
    try:
        root = processes.started[0].popen.pid if processes else None
        report = run(args, base, database_url, root)
    finally:
        if processes is not None:
            processes.stop_all()
            if report is None:
                print(f"logs of the stack: {processes.logdir}", file=sys.stderr)
            else:
                shutil.rmtree(processes.logdir, ignore_errors=True)
    write(args.out, report)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="a running Hearth instead of our own")
    parser.add_argument("--api-key", default="hearth-local")
    parser.add_argument(
        "--database-url",
        help="its database, for the latency and synthetic parts (own stack: found)",
    )
    parser.add_argument("--data", type=Path, default=eval_data())
    parser.add_argument("--limit-docs", type=int, help="a subset of N abstracts")
    parser.add_argument("--collection", default="bench-scifact")
    parser.add_argument(
        "--skip-ingest", action="store_true",
        help="reuse the collection (no throughput figures)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1,
        help="torch threads, for Hearth's workers and raw alike",
    )  # fmt: skip
    parser.add_argument(
        "--raw-sample", type=int, default=1000,
        help="chunks the raw baseline embeds",
    )  # fmt: skip
    parser.add_argument(
        "--synthetic-chunks", type=int, default=100_000,
        help="size of the large collection (0: skip it)",
    )  # fmt: skip
    parser.add_argument("--rrf-k", type=int, default=None, help="default: Hearth's")
    parser.add_argument("--workers", type=int, default=4, help="queries in flight")
    parser.add_argument(
        "--stack-env", action="append", default=[], metavar="HEARTH_X=VALUE",
        help="a setting for the stack this starts (repeatable)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def run(args, base: str, database_url: str | None, root: int | None) -> dict:
    from retrieval.chunking import OVERLAP_TOKENS, TARGET_TOKENS
    from retrieval.search import RRF_K

    rrf_k = args.rrf_k or RRF_K
    corpus, queries, qrels = scifact.load(args.data, "test")
    corpus, queries, qrels = subset(corpus, queries, qrels, args.limit_docs)
    headers = {"Authorization": f"Bearer {args.api_key}"}
    client = httpx.Client(base_url=base, timeout=300, headers=headers)
    report: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "threads": args.threads,
        "corpus": len(corpus),
        "queries": len(queries),
        "subset": bool(args.limit_docs),
        "command": " ".join(["python -m bench.retrieval", *sys.argv[1:]]),
    }
    print(f"{len(corpus)} abstracts, {len(queries)} test queries", flush=True)

    raw = Raw()
    if not args.skip_ingest:
        # Raw before and after the pipeline: on a shared machine the load
        # of others changes between the two.
        texts = chunk_texts(corpus, {"chunk_tokens": TARGET_TOKENS,
                                     "chunk_overlap": OVERLAP_TOKENS})  # fmt: skip
        sample = random.Random(_SEED).sample(texts, min(args.raw_sample, len(texts)))
        raw_before, raw_cpu = raw.rate(sample)
        print(f"raw: {raw_before:.2f} chunks/s", flush=True)
        before, cpu_before = batch_sizes(base), stack_cpu(root) if root else {}
        seconds = scifact.ingest(client, args.collection, corpus)
        after, cpu_after = batch_sizes(base), stack_cpu(root) if root else {}
        report["ingestion"] = {"seconds": round(seconds, 1)}
        if root:
            report["ingestion"]["cpu_s"] = {
                role: round(used - cpu_before.get(role, 0.0), 1)
                for role, used in sorted(cpu_after.items())
            }
        passes = after["count"] - before["count"]
        if passes:
            report["ingestion"]["mean_embedding_batch"] = round(
                (after["sum"] - before["sum"]) / passes, 1
            )
    collection = client.get(f"/collections/{args.collection}").json()
    docs = documents(client, args.collection)
    chunks = sum(d["chunk_count"] for d in docs)
    failed = sum(1 for d in docs if d["state"] == "failed")
    report["chunks"] = chunks
    print(f"{len(docs)} documents ({failed} failed), {chunks} chunks", flush=True)

    if not args.skip_ingest:
        if len(texts) != chunks:
            print(f"warning: {len(texts)} chunk texts here, {chunks} indexed")
        raw_after, raw_cpu_after = raw.rate(sample)
        raw_rate = (raw_before + raw_after) / 2
        rate = chunks / seconds
        report["ingestion"].update({
            "documents": len(docs), "failed": failed, "chunks": chunks,
            "pipeline_chunks_s": round(rate, 2), "raw_chunks_s": round(raw_rate, 2),
            "raw_before_after": [round(raw_before, 2), round(raw_after, 2)],
            "raw_sample": len(sample), "ratio": round(rate / raw_rate, 3),
            "raw_cpu_ms_per_chunk": round((raw_cpu + raw_cpu_after) / 2 * 1000, 1),
        })  # fmt: skip
        if root:
            cpu = report["ingestion"]["cpu_s"]
            report["ingestion"]["pipeline_cpu_ms_per_chunk"] = {
                role: round(used / chunks * 1000, 1) for role, used in cpu.items()
            } | {"total": round(sum(cpu.values()) / chunks * 1000, 1)}
        print(f"ingestion: {rate:.2f} chunks/s through the pipeline, raw "
              f"{raw_rate:.2f} chunks/s, ratio {rate / raw_rate:.3f}",
              flush=True)  # fmt: skip

    report["quality"] = []
    for mode in MODES:
        ndcg, recall, lat = scifact.run_mode(
            client, args.collection, queries, qrels, mode, rrf_k, args.workers
        )
        report["quality"].append({
            "mode": mode, "ndcg_at_10": round(ndcg, 4),
            "recall_at_100": round(recall, 4), "published": PUBLISHED[mode],
            "http": percentiles(lat),
        })  # fmt: skip
        print(f"{mode:8} nDCG@10 {ndcg:.4f}  Recall@100 {recall:.4f}  "
              f"published {PUBLISHED[mode]}", flush=True)  # fmt: skip

    if database_url is None:
        print("no --database-url: search latency without the embedding skipped")
        return report
    texts = list(queries.values())
    vectors = raw.vectors(texts)
    tenant = collection["tenant"]
    measured = asyncio.run(latencies(
        database_url, tenant=tenant, collection=collection["id"], queries=texts,
        vectors=vectors, rrf_k=rrf_k,
    ))  # fmt: skip
    report["latency"] = {
        "top_k": LATENCY_TOP_K,
        "collections": [{"chunks": chunks, **measured}],
    }
    print(f"latency at {chunks} chunks: {report['latency']['collections'][0]}")
    if args.synthetic_chunks:
        name = f"{args.collection}-synthetic"
        client.delete(f"/collections/{name}")
        made = client.post("/collections", json={"name": name}).json()
        seconds = asyncio.run(synthesize(
            database_url, tenant=tenant, source=collection["id"],
            target=made["id"], count=args.synthetic_chunks,
        ))  # fmt: skip
        measured = asyncio.run(latencies(
            database_url, tenant=tenant, collection=made["id"], queries=texts,
            vectors=vectors, rrf_k=rrf_k,
        ))  # fmt: skip
        report["latency"]["collections"].append(
            {"chunks": args.synthetic_chunks, "insert_s": round(seconds, 1), **measured}
        )
        print(f"latency at {args.synthetic_chunks} chunks: {measured}")
        if args.base_url:
            client.delete(f"/collections/{name}")
    return report


def markdown(report: dict) -> str:
    title = "SciFact subset" if report["subset"] else "SciFact"
    lines = [
        f"# Retrieval: {title} ({report['corpus']} abstracts, {report['chunks']} "
        f"chunks, {report['queries']} test queries)",
        "",
        f"`{report['command']}`; {report['machine']}, torch threads "
        f"{report['threads']}.",
        "",
        "| mode | nDCG@10 | published nDCG@10 | Recall@100 | HTTP p50 / p95 ms |",
        "|---|---|---|---|---|",
    ]
    for row in report["quality"]:
        lines.append(
            f"| {row['mode']} | {row['ndcg_at_10']:.4f} | {row['published']} "
            f"| {row['recall_at_100']:.4f} | {row['http']['p50_ms']:.0f} / "
            f"{row['http']['p95_ms']:.0f} |"
        )
    lines += ["", "HTTP latency includes embedding the query on the worker."]
    if "ingestion" in report:
        ing = report["ingestion"]
        lines += [
            "",
            "| ingestion | value |",
            "|---|---|",
            f"| documents (failed) | {ing['documents']} ({ing['failed']}) |",
            f"| chunks | {ing['chunks']} in {ing['seconds']} s |",
            f"| pipeline chunks/s | {ing['pipeline_chunks_s']} |",
            f"| raw sentence-transformers chunks/s ({ing['raw_sample']} of the "
            f"same chunks, batch 64; mean of before and after "
            f"{ing['raw_before_after']}) | {ing['raw_chunks_s']} |",
            f"| ratio | {ing['ratio']} |",
            f"| mean texts per forward pass in the worker | "
            f"{ing.get('mean_embedding_batch', '-')} |",
            f"| raw CPU ms per chunk | {ing['raw_cpu_ms_per_chunk']} |",
        ]
        per_chunk = ing.get("pipeline_cpu_ms_per_chunk", {})
        lines += [f"| pipeline CPU ms per chunk: {role} | {value} |"
                  for role, value in per_chunk.items() if value]  # fmt: skip
    if "latency" in report:
        lines += [
            "",
            f"Search latency without the query embedding (top {LATENCY_TOP_K}, "
            "`retrieval.search.search` against the database), p50 / p95 ms:",
            "",
            "| chunks in the collection | lexical | dense | hybrid |",
            "|---|---|---|---|",
        ]
        for row in report["latency"]["collections"]:
            cells = [f"{row[m]['p50_ms']} / {row[m]['p95_ms']}" for m in MODES]
            lines.append(f"| {row['chunks']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(folder: Path, report: dict) -> None:
    stem = f"retrieval-{report['corpus']}docs" if report["subset"] else "retrieval"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (folder / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
