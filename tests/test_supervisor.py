"""The supervisor's parts, driven with tiny real child processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from structlog.testing import capture_logs

from server.backoff import Backoff
from server.bind_policy import check_bind
from server.child_registry import ChildRegistry
from server.children import ChildSpec
from server.data_dir_lock import DataDirLock
from server.errors import ConfigError
from server.settings import Settings
from server.stack import ServiceURLs, child_env, worker_specs
from workers.specs import ModelCatalog, ModelSpec

PY = sys.executable


def _spec(name: str, code: str, **extra) -> ChildSpec:
    return ChildSpec(name=name, argv=[PY, "-c", code], **extra)


def _check_until(registry: ChildRegistry, done, *, limit_s: float = 30.0) -> None:
    """Drive the registry's watch loop until ``done()``; fail rather than hang."""
    deadline = time.monotonic() + limit_s
    while not done():
        assert time.monotonic() < deadline, "condition never held"
        registry.check()
        time.sleep(0.01)


def test_backoff_doubles_to_the_cap_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(initial_s=0.5, max_s=30.0, reset_after_s=60.0)
    delays = [backoff.delay_after(uptime_s=1.0) for _ in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff.delay_after(uptime_s=60.0) == 0.5
    assert backoff.delay_after(uptime_s=0.1) == 1.0


def test_a_crashing_child_is_restarted_with_growing_delays() -> None:
    registry = ChildRegistry(
        backoff=lambda: Backoff(initial_s=0.01, max_s=0.04, reset_after_s=60)
    )
    pids = set()
    with capture_logs() as logs:
        child = registry.start(_spec("crasher", "raise SystemExit(3)"), group="g")

        def restarted_four_times() -> bool:
            pids.add(child.pid)
            return registry.restarts("crasher") >= 4

        _check_until(registry, restarted_four_times)
        registry.stop(["g"])

    exits = [e for e in logs if e["event"] == "child exited; restarting"]
    assert [e["delay_s"] for e in exits[:4]] == [0.01, 0.02, 0.04, 0.04]
    assert {e["exit_code"] for e in exits} == {3}
    assert all(e["child"] == "crasher" for e in exits)
    assert len({e["pid"] for e in exits}) == len(exits)
    assert len(pids) >= 4


def test_a_killed_child_comes_back_as_a_new_process() -> None:
    registry = ChildRegistry(backoff=lambda: Backoff(initial_s=0.01))
    child = registry.start(_spec("sleeper", "import time; time.sleep(600)"), group="g")
    first = child.pid
    try:
        with capture_logs() as logs:
            psutil.Process(first).kill()
            _check_until(registry, lambda: child.running and child.pid != first)
        (event,) = [e for e in logs if e["event"] == "child exited; restarting"]
        assert event["pid"] == first
        assert event["exit_code"] == -signal.SIGKILL
        assert psutil.Process(child.pid).is_running()
    finally:
        registry.stop(["g"])
    assert not psutil.pid_exists(child.pid) or (
        psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
    )


_RECORD_STOP = """
import signal, sys, time
def stop(*_):
    with open(sys.argv[1], "a") as f:
        f.write(sys.argv[2] + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(sys.argv[3], "w").close()
time.sleep(600)
"""


def test_groups_stop_in_the_given_order(tmp_path: Path) -> None:
    record = tmp_path / "stopped.txt"
    registry = ChildRegistry()
    started = []
    for group in ["database", "broker", "api", "worker", "worker", "beat"]:
        marker = tmp_path / f"{len(started)}.up"
        started.append(marker)
        spec = ChildSpec(
            name=f"{group}-{len(started)}",
            argv=[PY, "-c", _RECORD_STOP, str(record), group, str(marker)],
        )
        registry.start(spec, group=group)
    _check_until(registry, lambda: all(m.exists() for m in started))

    registry.stop(["api", "worker", "beat", "broker", "database"])

    lines = record.read_text().split()
    assert lines == ["api", "worker", "worker", "beat", "broker", "database"]
    assert [child.poll() for child in registry.children()] == [0] * 6


def test_a_child_that_ignores_its_stop_signal_is_killed_with_its_group(
    tmp_path: Path,
) -> None:
    stubborn = (
        "import signal, subprocess, sys, time;"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
        "print(p.pid, flush=True); time.sleep(600)"
    )
    registry = ChildRegistry()
    log = tmp_path / "stubborn.log"
    child = registry.start(
        _spec("stubborn", stubborn, stop_timeout_s=0.5, log_path=log), group="g"
    )
    _check_until(registry, lambda: log.exists() and log.read_text().strip())
    grandchild = psutil.Process(int(log.read_text()))

    registry.stop(["g"])

    assert child.poll() == -signal.SIGKILL
    _gone, alive = psutil.wait_procs([grandchild], timeout=10)
    assert alive == []


_SUPERVISE_FOREVER = """
import sys
from server.children import ChildSpec
from server.child_registry import ChildRegistry
from server.logs import configure_logging
configure_logging(level="INFO", json=True, process="test")  # keep stdout for pids
registry = ChildRegistry()
sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
for n in range(3):
    registry.start(ChildSpec(name=f"c{n}", argv=sleep), group="g")
print(" ".join(str(c.pid) for c in registry.children()), flush=True)
while True:
    registry.check()
    import time; time.sleep(0.05)
"""


def test_sigkilled_supervisor_leaves_no_child_alive() -> None:
    supervisor = subprocess.Popen(
        [PY, "-c", _SUPERVISE_FOREVER], stdout=subprocess.PIPE, text=True
    )
    try:
        pids = [int(pid) for pid in supervisor.stdout.readline().split()]
        children = [psutil.Process(pid) for pid in pids]
        assert len(children) == 3 and all(c.is_running() for c in children)
    finally:
        supervisor.kill()
        supervisor.wait()
        supervisor.stdout.close()

    _gone, alive = psutil.wait_procs(children, timeout=10)
    for orphan in alive:  # do not let a failure leak processes into the run
        orphan.kill()
    assert alive == [], f"orphans: {alive}"


def test_children_are_only_spawned_from_the_main_thread() -> None:
    import threading

    errors: list[BaseException] = []

    def spawn() -> None:
        try:
            ChildRegistry().start(_spec("t", "pass"), group="g")
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=spawn)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "main thread" in str(errors[0])


def test_the_data_dir_lock_admits_one_holder_and_frees_on_death(
    tmp_path: Path,
) -> None:
    holder = subprocess.Popen(
        [
            PY,
            "-c",
            "import sys, time; from pathlib import Path;"
            "from server.data_dir_lock import DataDirLock;"
            "DataDirLock(Path(sys.argv[1])).acquire(); print('held', flush=True);"
            "time.sleep(600)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError) as refused:
            DataDirLock(tmp_path).acquire()
        assert f"(pid {holder.pid})" in refused.value.message
        assert "--data-dir" in refused.value.message
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()

    with DataDirLock(tmp_path):
        assert (tmp_path / "hearth.lock").read_text().strip() != str(holder.pid)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "::1", "localhost"])
def test_loopback_hosts_are_allowed(host: str) -> None:
    check_bind(Settings(host=host))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_other_hosts_need_the_insecure_bind_flag(host: str) -> None:
    with pytest.raises(ConfigError) as refused:
        check_bind(Settings(host=host))
    assert "--allow-insecure-bind" in refused.value.message
    assert repr(host) in refused.value.message
    check_bind(Settings(host=host, allow_insecure_bind=True))


def _catalog(tmp_path: Path) -> ModelCatalog:
    def local(name: str, workers: int) -> ModelSpec:
        return ModelSpec(
            name=name, kind="chat", backend="transformers", path=tmp_path,
            workers=workers,
        )  # fmt: skip

    remote = ModelSpec(
        name="far", kind="chat", backend="remote", base_url="http://127.0.0.1:9/v1"
    )
    return ModelCatalog([local("two", 2), local("none", 0), remote])


_URLS = ServiceURLs(
    broker_url="redis://127.0.0.1:1/0",
    redis_url="redis://127.0.0.1:1/0",
    database_url="postgresql://postgres@127.0.0.1:2/hearth",
)


def test_one_worker_child_per_model_worker(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    settings = Settings(data_dir=tmp_path, bundled_models=False)
    env = child_env(settings, _URLS)

    specs = worker_specs(settings, _catalog(tmp_path), env)

    assert [s.name for s in specs] == ["worker-two-1", "worker-two-2", "worker-far-1"]
    hostnames = [s.argv[s.argv.index("--hostname") + 1] for s in specs]
    assert len(set(hostnames)) == 3
    assert [s.argv[s.argv.index("--models") + 1] for s in specs] == [
        "two",
        "two",
        "far",
    ]
    # Two local model processes share eight CPUs; the remote one is not counted.
    assert {s.env["HEARTH_TORCH_THREADS"] for s in specs} == {"4"}
    assert all(s.env["HEARTH_BROKER_URL"] == _URLS.broker_url for s in specs)
    assert all(s.env["HEARTH_DATABASE_URL"] == _URLS.database_url for s in specs)
    assert all(s.env["HEARTH_REDIS_URL"] == _URLS.redis_url for s in specs)


def test_configured_torch_threads_are_left_alone(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, bundled_models=False, torch_threads=3)
    specs = worker_specs(settings, _catalog(tmp_path), child_env(settings, _URLS))
    assert {s.env["HEARTH_TORCH_THREADS"] for s in specs} == {"3"}


def _hearth_up(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HEARTH_DATA_DIR": str(tmp_path / "data"),
    }
    return subprocess.run(
        [PY, "-m", "server", "up", "--port", "1", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_hearth_up_refuses_a_data_dir_in_use(tmp_path: Path) -> None:
    with DataDirLock(tmp_path / "data"):
        result = _hearth_up(tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1].startswith("Error: another `hearth up`")
    )
    assert result.stdout == ""


def test_hearth_up_refuses_a_public_host_without_the_flag(tmp_path: Path) -> None:
    result = _hearth_up(tmp_path, "--host", "0.0.0.0")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: refusing to serve on '0.0.0.0'")
    assert "--allow-insecure-bind" in last
    # The embedded database had to start to be asked for keys; it is gone.
    import psutil

    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
    assert "api" not in result.stdout


_LOG_SOME = """
import logging, structlog
from server.logs import configure_logging
configure_logging(level="INFO", json=None, process="probe")
structlog.contextvars.bind_contextvars(request_id="req-1", model="m")
structlog.get_logger("probe.mod").info("hello", n=1)
logging.getLogger("uvicorn.error").warning("from stdlib")
structlog.get_logger("probe.mod").debug("hidden")
print("stdout stays clean")
"""


def test_logs_are_json_lines_with_context_when_not_on_a_terminal() -> None:
    result = subprocess.run(
        [PY, "-c", _LOG_SOME], capture_output=True, text=True, check=True
    )
    assert result.stdout == "stdout stays clean\n"
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["event"] for line in lines] == ["hello", "from stdlib"]
    first, second = lines
    assert first["n"] == 1 and first["level"] == "info"
    assert first["logger"] == "probe.mod"
    for line in lines:
        assert line["request_id"] == "req-1"
        assert line["model"] == "m"
        assert line["process"] == "probe"
    assert second["level"] == "warning"


def _wait_for_line(stream, prefix: str) -> str:
    for line in stream:
        if line.startswith(prefix):
            return line.rstrip("\n")
    raise AssertionError(f"the process ended without printing {prefix!r}")


@pytest.mark.stack
def test_hearth_up_without_models_serves_restarts_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    import httpx

    from server.ports import free_port

    port = free_port()
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HEARTH_DATA_DIR": str(tmp_path / "data"),
        "HEARTH_BUNDLED_MODELS": "false",
        "HEARTH_LOG_JSON": "true",
    }
    stderr = (tmp_path / "up.log").open("w")
    up = subprocess.Popen(
        [PY, "-m", "server", "up", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        line = _wait_for_line(up.stdout, "Hearth is ready")
        assert line == f"Hearth is ready on http://127.0.0.1:{port}/v1"
        tree = psutil.Process(up.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in tree)
        for needed in ("valkey-server", "pginstall/bin/postgres", "server api"):
            assert needed in names
        assert "server beat" in names

        api = next(p for p in tree if p.cmdline()[-1:] == ["api"])
        api.kill()
        api.wait(10)
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "the API did not come back"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        tree = psutil.Process(up.pid).children(recursive=True)

        up.send_signal(signal.SIGTERM)
        assert up.wait(120) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        up.stdout.close()
        stderr.close()

    _gone, alive = psutil.wait_procs(tree, timeout=10)
    for orphan in alive:
        orphan.kill()
    assert alive == [], f"left running after shutdown: {alive}"
    log = (tmp_path / "up.log").read_text()
    events = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
    restarts = [e for e in events if e.get("event") == "child exited; restarting"]
    assert [(e["child"], e["exit_code"]) for e in restarts] == [("api", -9)]
    stopped = [e["child"] for e in events if e.get("event") == "child stopped"]
    assert stopped == ["api", "beat", "valkey", "postgres"]
