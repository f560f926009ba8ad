"""docker-compose.yml and the Dockerfile, checked by parsing them (no Docker needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"postgres", "redis", "storage", "migrate", "api", "worker"}
APP_SERVICES = ("migrate", "api", "worker")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def named_volumes(service: dict[str, Any]) -> dict[str, str]:
    """Named volume -> mount target."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        mounts[source] = target
    return mounts


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    return cmd.split() if isinstance(cmd, str) else list(cmd or [])


def exec_form(dockerfile: list[tuple[str, str]], keyword: str) -> list[str]:
    found = [args for kw, args in dockerfile if kw == keyword]
    assert found, f"no {keyword} in the Dockerfile"
    value = json.loads(found[-1])  # the last one wins
    assert isinstance(value, list)
    return value


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_the_six_services_exist(services: dict[str, Any]) -> None:
    assert set(services) >= SERVICES


@pytest.mark.parametrize("name", ["api", "worker"])
def test_api_and_worker_wait_for_migrations_and_redis(services: dict[str, Any], name: str) -> None:
    deps = depends_on(services[name])
    assert deps.get("migrate") == "service_completed_successfully"
    assert deps.get("redis") == "service_healthy"
    assert deps.get("storage") == "service_healthy"


def test_migrate_is_a_one_shot_after_postgres(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert command(migrate) == ["bulkops", "migrate"]
    assert depends_on(migrate).get("postgres") == "service_healthy"
    assert str(migrate.get("restart")) == "no"


def test_api_and_worker_run_their_commands(services: dict[str, Any]) -> None:
    assert command(services["worker"]) == ["bulkops", "worker"]
    api = command(services["api"])
    # No command means the image's CMD, which test_dockerfile_cmd_serves_the_api checks.
    if api:
        assert api[:2] == ["bulkops", "serve"]
        assert api[api.index("--host") + 1] == "0.0.0.0"


def test_api_publishes_port_8000(services: dict[str, Any]) -> None:
    ports = [
        str(p) if not isinstance(p, dict) else f"{p['published']}:{p['target']}"
        for p in services["api"].get("ports", [])
    ]
    assert any(p.endswith(":8000") for p in ports), ports


def test_worker_runs_several_replicas_and_gets_time_to_finish(
    services: dict[str, Any],
) -> None:
    worker = services["worker"]
    assert worker["deploy"]["replicas"] > 1
    # A worker finishes its current batch on SIGTERM; Docker's default is 10s.
    assert seconds(str(worker["stop_grace_period"])) >= 30


def test_api_and_worker_share_the_compose_object_store(services: dict[str, Any]) -> None:
    """No shared disk: files go to the storage service, which keeps them in a volume."""
    api, worker, storage = services["api"], services["worker"], services["storage"]
    env = environment(api)
    assert urlsplit(env["BULKOPS_STORAGE_URL"]).scheme == "s3"
    assert urlsplit(env["AWS_ENDPOINT_URL"]).hostname == "storage"
    for key in ("BULKOPS_STORAGE_URL", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"):
        assert environment(worker)[key] == env[key]
    assert not named_volumes(api) and not named_volumes(worker)
    bucket = urlsplit(env["BULKOPS_STORAGE_URL"]).hostname
    assert f"-bucket={bucket}" in command(storage)
    assert environment(storage)["AWS_ACCESS_KEY_ID"] == env["AWS_ACCESS_KEY_ID"]
    assert named_volumes(storage), "the store keeps its data in a volume"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_point_at_the_compose_postgres_and_redis(
    services: dict[str, Any], name: str
) -> None:
    env = environment(services[name])
    database = urlsplit(env["DATABASE_URL"])
    redis = urlsplit(env["REDIS_URL"])
    assert database.scheme in {"postgresql", "postgres"}
    assert database.hostname == "postgres"
    assert redis.scheme == "redis"
    assert redis.hostname == "redis"
    # The app connects as the user that ran the migrations: the one the image creates.
    postgres_env = environment(services["postgres"])
    assert database.username == postgres_env["POSTGRES_USER"]
    assert database.path == f"/{postgres_env['POSTGRES_DB']}"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    long_running = [n for n, s in services.items() if str(s.get("restart")) != "no"]
    assert {"postgres", "redis", "api", "worker"} <= set(long_running)
    for name in long_running:
        check = services[name].get("healthcheck") or {}
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} has its healthcheck disabled"


def test_api_healthcheck_uses_readiness(services: dict[str, Any]) -> None:
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])


def test_worker_healthcheck_does_not_expect_http(services: dict[str, Any]) -> None:
    # The image's HEALTHCHECK polls the API's /healthz; a worker serves no HTTP.
    test = " ".join(services["worker"]["healthcheck"]["test"])
    assert "/healthz" not in test
    assert "/readyz" not in test


def test_postgres_18_keeps_its_data_in_a_volume(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:18")
    # 18+ images store data under /var/lib/postgresql/18/docker and refuse to start with
    # a volume at the old /var/lib/postgresql/data.
    mounts = {t: s for s, t in named_volumes(postgres).items()}
    assert "/var/lib/postgresql" in mounts
    assert mounts["/var/lib/postgresql"] in (compose.get("volumes") or {})


def test_dockerfile_cmd_serves_the_api(dockerfile: list[tuple[str, str]]) -> None:
    cmd = exec_form(dockerfile, "CMD")
    assert cmd[:2] == ["bulkops", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--port") + 1] == "8000"


def test_dockerfile_base_user_and_healthcheck(dockerfile: list[tuple[str, str]]) -> None:
    assert next(args for kw, args in dockerfile if kw == "FROM").startswith("python:3.11-slim")
    users = [args for kw, args in dockerfile if kw == "USER"]
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    healthcheck = next(args for kw, args in dockerfile if kw == "HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert "urllib" in healthcheck
    installs = " ".join(args for kw, args in dockerfile if kw == "RUN" and "pip install" in args)
    assert installs, "the project is installed with pip"
    assert "[dev]" not in installs


MONITORING = ("prometheus", "grafana")


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Repository path -> mount target, of the mounts taken from the repository."""
    return {
        source: target
        for source, target in named_volumes(service).items()
        if source.startswith("./")
    }


def test_monitoring_runs_only_in_its_profile(services: dict[str, Any]) -> None:
    for name in MONITORING:
        assert services[name]["profiles"] == ["monitoring"]
    # A plain `docker compose up` starts what it started before.
    for name in SERVICES:
        assert not services[name].get("profiles"), name


def test_monitoring_mounts_files_that_exist(services: dict[str, Any]) -> None:
    for name in MONITORING:
        mounts = bind_mounts(services[name])
        assert mounts, f"{name} mounts nothing from deploy/"
        for source in mounts:
            assert (ROOT / source).exists(), source
    prometheus = services["prometheus"]
    config = bind_mounts(prometheus)["./deploy/prometheus.yml"]
    assert f"--config.file={config}" in command(prometheus)
    grafana = services["grafana"]
    mounted = bind_mounts(grafana)["./deploy/grafana"]
    assert environment(grafana)["GF_PATHS_PROVISIONING"] == f"{mounted}/provisioning"
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/bulkops.yml").read_text()
    )
    assert [p["options"]["path"] for p in provider["providers"]] == [mounted]
    datasources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    urls = [urlsplit(d["url"]) for d in datasources["datasources"]]
    assert [(u.hostname, u.port) for u in urls] == [("prometheus", 9090)]


def test_prometheus_scrapes_the_api_and_every_worker(services: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    targets: dict[str, tuple[int, str]] = {}
    for job in config["scrape_configs"]:
        for found in job.get("dns_sd_configs", []):
            for name in found["names"]:
                targets[name] = (found["port"], job.get("metrics_path", "/metrics"))
    assert targets["api"] == (8000, "/metrics")
    worker_port = int(environment(services["worker"])["BULKOPS_WORKER_METRICS_PORT"])
    assert targets["worker"][0] == worker_port
