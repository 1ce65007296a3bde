"""Every Prometheus metric Hearth's processes record, in one place.

API, workers and beat import this module and record into the same names.
Under ``hearth up`` the supervisor gives every child one
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode), so
the API's ``/metrics`` reads all processes' samples in one scrape. Without
it (a pod in a cluster) each process serves only its own samples, and
Prometheus scrapes each pod.

Gauges that describe the whole system (queue depth, live workers, jobs by
state) are not recorded here: the API reads them from Redis and PostgreSQL
at scrape time (server.metrics_scrape). Labels never hold a tenant, a key or
any text a client sent; route labels are templates, not paths.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_TOKEN_GAP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_LOAD_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

# API: one sample per HTTP request.
HTTP_REQUESTS = Counter(
    "hearth_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "hearth_http_request_duration_seconds",
    "Time from request to the end of the response (streams included).",
    ["route", "method", "status"],
    buckets=_LATENCY_BUCKETS,
)

# API: one sample per finished inference request (from its usage record).
INFERENCE_REQUESTS = Counter(
    "hearth_inference_requests_total",
    "Inference requests finished, by endpoint, model and status.",
    ["endpoint", "model", "status"],
)
PROMPT_TOKENS = Counter(
    "hearth_prompt_tokens_total", "Tokens read by models (input).", ["model"]
)
COMPLETION_TOKENS = Counter(
    "hearth_completion_tokens_total", "Tokens generated (output).", ["model"]
)

# Workers: one sample per Celery task.
TASK_DURATION = Histogram(
    "hearth_task_duration_seconds",
    "Time a task ran in a worker.",
    ["task", "model"],
    buckets=_TASK_BUCKETS,
)
TASK_QUEUE_WAIT = Histogram(
    "hearth_task_queue_wait_seconds",
    "Time from sending a task to a worker starting it.",
    ["task", "model"],
    buckets=_TASK_BUCKETS,
)
TASKS = Counter(
    "hearth_tasks_total",
    "Tasks finished, by outcome (ok, cancelled, or an error code).",
    ["task", "model", "outcome"],
)
TASK_RETRIES = Counter(
    "hearth_task_retries_total", "Task retries requested by Celery.", ["task"]
)
TASK_FAILURES = Counter(
    "hearth_task_failures_total",
    "Tasks that raised out of the worker (a bug or a lost dependency).",
    ["task"],
)
TIME_TO_FIRST_TOKEN = Histogram(
    "hearth_time_to_first_token_seconds",
    "Time from sending a generation to its first token, queue wait included.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
INTER_TOKEN = Histogram(
    "hearth_inter_token_latency_seconds",
    "Time between consecutive tokens of one choice.",
    ["model"],
    buckets=_TOKEN_GAP_BUCKETS,
)
EMBEDDED_INPUTS = Counter(
    "hearth_embedding_inputs_total",
    "Texts embedded; its rate is embeddings per second.",
    ["model"],
)
EMBED_BATCH_SIZE = Histogram(
    "hearth_embedding_batch_size",
    "Texts per forward pass of the embedding engine (across requests).",
    ["model"],
    buckets=_BATCH_BUCKETS,
)
MODEL_LOAD = Histogram(
    "hearth_model_load_seconds",
    "Time to load a model when a worker starts.",
    ["model", "backend"],
    buckets=_LOAD_BUCKETS,
)
# Ingestion workers: one sample per document attempt (retrieval.pipeline).
DOCUMENTS_INDEXED = Counter(
    "hearth_documents_indexed_total",
    "Document ingestion attempts, by outcome (indexed, superseded, failed, cancelled).",
    ["outcome"],
)
CHUNKS_INDEXED = Counter(
    "hearth_chunks_indexed_total",
    "Chunks written to the index with their vectors, by embedding model.",
    ["model"],
)
WORKER_STARTS = Counter(
    "hearth_worker_starts_total",
    "Worker processes started; more than one per worker means restarts.",
    ["model"],
)
