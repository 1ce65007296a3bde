"""The deployment files agree with the code: queue names, metric names.

No cluster or Prometheus runs here (see README, Operations); these checks
catch the drift that schema validation cannot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import Counter, Histogram

from server import metrics
from tests.stackutil import REPO
from workers import protocol, task_metrics

DEPLOY = REPO / "deploy"
METRIC = re.compile(r"\bhearth_[a-z_]+\b")
SCRAPE_TIME = {
    "hearth_queue_depth",
    "hearth_queue_oldest_message_age_seconds",
    "hearth_workers_live",
    "hearth_worker_inflight_tasks",
    "hearth_jobs",
}

# Celery header names, not metrics.
TASK_HEADERS = {task_metrics.REQUEST_ID, task_metrics.TENANT, task_metrics.SENT_AT}


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _known_metrics() -> set[str]:
    names = set(SCRAPE_TIME)
    for value in vars(metrics).values():
        if not isinstance(value, Counter | Histogram):
            continue
        for family in value.describe():
            names.add(family.name)
            names.add(f"{family.name}_total")
            for suffix in ("_bucket", "_sum", "_count"):
                names.add(f"{family.name}{suffix}")
    return names


def test_every_yaml_file_parses():
    files = sorted(DEPLOY.rglob("*.y*ml"))
    assert len(files) >= 10
    for path in files:
        assert _documents(path), path


def test_keda_scales_each_worker_on_its_model_queues():
    for path in sorted((DEPLOY / "k8s").glob("worker-*.yaml")):
        docs = {doc["kind"]: doc for doc in _documents(path)}
        deployment, scaled = docs["Deployment"], docs["ScaledObject"]
        model = deployment["metadata"]["labels"]["hearth.dev/model"]
        command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]

        name = deployment["metadata"]["name"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        budget = docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]

        assert command[-2:] == ["--models", model]
        assert scaled["spec"]["scaleTargetRef"]["name"] == name
        lists = {t["metadata"]["listName"] for t in scaled["spec"]["triggers"]}
        assert lists == set(protocol.model_queues("hearth", model))
        assert budget == selector


def test_alerts_dashboard_and_readme_name_real_metrics():
    known = _known_metrics()
    dashboard = json.loads((DEPLOY / "grafana/dashboards/hearth.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    sources = {
        "alerts": (DEPLOY / "prometheus/alerts.yml").read_text(),
        "dashboard": "\n".join(exprs),
        "README": (REPO / "README.md").read_text(),
    }
    for where, text in sources.items():
        unknown = set(METRIC.findall(text)) - known - TASK_HEADERS
        assert not unknown, f"{where} names metrics that do not exist: {unknown}"


def _compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        if os.environ.get("HEARTH_SKIP_COMPOSE") == "1":
            pytest.skip("HEARTH_SKIP_COMPOSE=1: no docker-compose on this machine")
        pytest.fail(
            "docker-compose is missing: apt-get install docker-compose "
            "(or set HEARTH_SKIP_COMPOSE=1 to skip the compose check)"
        )
    return found


def test_compose_file_passes_docker_compose_config(tmp_path):
    """Debian's docker-compose (1.29) checks the file against the Compose
    Specification schema it ships and resolves anchors and merges, as
    `docker compose config` would. It only parses: DOCKER_HOST names a
    socket that does not exist, so no daemon could be reached."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
    }
    result = subprocess.run(
        [_compose(), "-f", str(DEPLOY / "compose.yaml"), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["worker-chat"]["environment"]["HEARTH_WORKER_METRICS_PORT"] == (
        "9100"
    )
    migrate = services["api"]["depends_on"]["migrate"]
    assert migrate["condition"] == "service_completed_successfully"
