"""The deploy/ files agree with the code: ports, probe paths, variable names, shutdown bounds,
users. No container engine needed: the files are parsed, and the health checks are run."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML: a test dependency (the dev extra)

from proxy import ops
from proxy.__main__ import parser, serve
from proxy.runtime import Runtime
from proxy.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"
# BuildKit reads `<Dockerfile>.dockerignore` in place of the context root's .dockerignore.
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
COMPOSE = DEPLOY / "compose.yaml"
PROXY_IMAGE = "edge-proxy"  # the image's repository name, in every manifest
# Seconds the grace period must leave beyond preStop and the server's own drain bound: the
# flush that follows the drain, and the kubelet's and Docker's own latency.
MARGIN = 5.0
# What the interpreter and pip read; every other variable must be one the proxy reads.
INTERPRETER_VARS = re.compile(r"^(PATH|PYTHON[A-Z_]*|PIP_[A-Z_]+)$")


# --- what the code says -------------------------------------------------------------------


KNOWN_VARIABLES = set(Settings.variables())  # every variable Settings.from_env reads
OPS_PATHS = {route.path for route in ops.routes}
DEFAULTS = Settings()


# --- the Dockerfile -----------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    args: dict[str, str] = field(default_factory=dict)
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.base}"
        return found[-1]

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.args.get(m[1] or m[2], m[0]), text)

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for rest in self.all("ENV"):
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                out[name] = value
        return out


def _assignments(rest: str) -> dict[str, str]:
    return {k: v for k, _, v in (item.partition("=") for item in shlex.split(rest))}


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of instructions: comments dropped, continuation lines joined, ARGs expanded."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m[1], m[0]), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            if keyword == "ARG":
                global_args.update(_assignments(rest))
        else:
            stage = stages[-1]
            if keyword == "ARG":
                stage.args.update(_assignments(rest))
            stage.instructions.append((keyword, stage.expand(rest)))
    return stages


STAGES = parse_dockerfile(DOCKERFILE.read_text())
FINAL = STAGES[-1]
IMAGE_ENV = FINAL.env()


def ignored(path: str) -> bool:
    """Whether the build context leaves `path` out: the last matching pattern decides, and a
    pattern that matches a parent directory matches what is inside it (as Docker's does)."""
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for line in lines:
        if not line or line.startswith("#"):
            continue
        negated, pattern = line.startswith("!"), line.removeprefix("!")
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            result = not negated
    return result


def exec_form(rest: str) -> list[str]:
    argv = json.loads(rest)
    assert isinstance(argv, list), f"not the exec (JSON) form: {rest}"
    return [str(a) for a in argv]


def healthcheck_argv() -> list[str]:
    rest = FINAL.last("HEALTHCHECK")
    _, _, command = rest.partition("CMD ")
    return exec_form(command.strip())


# --- the YAML files -----------------------------------------------------------------------


def load_all(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


MANIFESTS = {path.name: load_all(path) for path in sorted(K8S.glob("*.yaml"))}
COMPOSE_FILE = load_all(COMPOSE)[0]


def documents(kind: str) -> list[dict[str, Any]]:
    return [doc for docs in MANIFESTS.values() for doc in docs if doc["kind"] == kind]


def pod_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def is_proxy(container: dict[str, Any]) -> bool:
    return str(container["image"]).rsplit("/", 1)[-1].split(":")[0] == PROXY_IMAGE


def deployments() -> list[dict[str, Any]]:
    return documents("Deployment")


def selects(selector: dict[str, str], deployment: dict[str, Any]) -> bool:
    return selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def proxy_containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(Deployment, proxy container) for every proxy in the Kubernetes manifests."""
    found = [
        (d, c)
        for d in deployments()
        for c in pod_containers(d["spec"]["template"]["spec"])
        if is_proxy(c)
    ]
    assert found, "no proxy container in deploy/kubernetes"
    return found


def literal_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


def effective_settings(env: dict[str, str]) -> Settings:
    """The settings a proxy runs with: the image's environment, then the deployment's."""
    merged = {k: v for k, v in {**IMAGE_ENV, **env}.items() if "${" not in v}
    return Settings.from_env(merged)


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or a Service's port (a number or a port name) as a container port number."""
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in by_name, f"port {port!r} is not a port of container {container['name']}"
    return int(by_name[port])


def prestop_seconds(container: dict[str, Any]) -> float:
    pre = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    command = pre.get("exec", {}).get("command", [])
    return float(command[1]) if command[:1] == ["sleep"] else 0.0


def compose_proxies() -> dict[str, dict[str, Any]]:
    services = COMPOSE_FILE["services"]
    return {name: s for name, s in services.items() if "build" in s or PROXY_IMAGE in s["image"]}


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    assert match, f"unreadable duration {duration!r}"
    return float(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match[2]]


# --- a stand-in for the server, for the health checks -------------------------------------


class Readyz(ThreadingHTTPServer):
    status = 200


class ReadyzHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, Readyz)
        status = self.server.status if self.path == "/readyz" else 404
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def readyz_server() -> Iterator[Readyz]:
    server = Readyz(("127.0.0.1", 0), ReadyzHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_check(argv: list[str], port: int) -> int:
    assert argv[:2] == ["python", "-c"], f"not a stdlib Python check: {argv}"
    env = {"EDGE_PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *argv[1:]], env=env, timeout=20).returncode


# --- the code the files rely on -------------------------------------------------------------


def test_settings_scan_finds_the_variables_the_readme_documents() -> None:
    assert {"REDIS_URL", "REDIS_MODE", "EDGE_PORT", "EDGE_DATA_DIR"} <= KNOWN_VARIABLES
    table = (ROOT / "README.md").read_text().split("## Configuration", 1)[1]
    missing = {name for name in KNOWN_VARIABLES if f"`{name}`" not in table}
    assert not missing, f"read by proxy/settings.py, absent from the README's table: {missing}"


def test_deploy_readme_explains_the_redis_topology_variables() -> None:
    text = (DEPLOY / "README.md").read_text()
    for name in ("REDIS_MODE", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"):
        assert name in text
    assert "EDGE_REDIS_WAIT_REPLICAS" in text


def test_everything_the_runtime_writes_lives_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", data_dir=tmp_path / "data")
    runtime = Runtime(settings)  # builds its clients without connecting
    assert runtime.spool.directory.is_relative_to(settings.data_dir)
    assert runtime.sync.lkg_path.is_relative_to(settings.data_dir)


# --- the image ----------------------------------------------------------------------------


def test_image_builds_in_a_builder_stage_and_ships_only_the_venv() -> None:
    assert len(STAGES) >= 2
    assert {stage.base for stage in STAGES} == {"python:3.11-slim"}
    builder = STAGES[0].name
    copies = FINAL.all("COPY")
    assert copies, "the final stage copies nothing"
    for rest in copies:
        assert rest.startswith(f"--from={builder} "), f"final stage copies from the context: {rest}"
        assert rest.split()[1:] == ["/opt/venv", "/opt/venv"]


def test_image_copies_only_paths_of_the_repository_root() -> None:
    for stage in STAGES:
        for rest in stage.all("COPY"):
            if not rest.startswith("--from="):
                for source in rest.split()[:-1]:
                    assert (ROOT / source).exists(), f"COPY {source}: not in the build context"


def test_build_context_keeps_what_the_image_copies_and_drops_the_rest() -> None:
    for stage in STAGES:
        for rest in stage.all("COPY"):
            if not rest.startswith("--from="):
                for source in rest.split()[:-1]:
                    assert not ignored(source), source
    assert not ignored("proxy/edge/sync.py")
    for path in (".venv/bin/python", ".git/HEAD", ".edge-data/snapshot.json", "tests/conftest.py"):
        assert ignored(path), path
    assert ignored("proxy/__pycache__/app.cpython-311.pyc")


def test_image_listens_on_every_interface_at_the_default_port() -> None:
    assert IMAGE_ENV["EDGE_HOST"] == "0.0.0.0"
    assert int(IMAGE_ENV["EDGE_PORT"]) == DEFAULTS.port == 8080
    assert [int(p.split("/")[0]) for p in FINAL.all("EXPOSE")] == [DEFAULTS.port]


def test_image_runs_as_a_fixed_non_root_uid() -> None:
    user = FINAL.last("USER").split(":")
    assert user[0].isdigit() and int(user[0]) != 0, "Kubernetes' runAsNonRoot needs a numeric uid"
    assert len(user) == 1 or (user[1].isdigit() and int(user[1]) != 0)


def test_image_data_dir_is_a_volume_owned_by_its_user() -> None:
    data_dir = IMAGE_ENV["EDGE_DATA_DIR"]
    assert data_dir.startswith("/")
    volumes = [v for rest in FINAL.all("VOLUME") for v in exec_form(rest)]
    assert data_dir in volumes
    uid = FINAL.last("USER").split(":")[0]
    runs = [run.replace('"', "") for run in FINAL.all("RUN")]
    assert any(f"chown {uid}:" in run and data_dir in run for run in runs)


def test_image_sets_only_variables_the_proxy_or_the_interpreter_reads() -> None:
    for stage in STAGES:
        for name in stage.env():
            assert name in KNOWN_VARIABLES or INTERPRETER_VARS.match(name), name
    effective_settings({})  # and the image's own values are valid settings


def test_image_starts_the_server_with_python_m_proxy_serve() -> None:
    argv = exec_form(FINAL.last("ENTRYPOINT")) + exec_form(FINAL.last("CMD"))
    assert argv[:3] == ["python", "-m", "proxy"]
    assert parser().parse_args(argv[3:]).run is serve


def test_image_stops_on_sigterm() -> None:
    assert FINAL.last("STOPSIGNAL") == "SIGTERM"


def test_image_healthcheck_uses_the_stdlib_on_readyz() -> None:
    argv = healthcheck_argv()
    assert "/readyz" in argv[-1] and "/readyz" in OPS_PATHS
    assert not {"curl", "wget"} & set(argv)


@pytest.mark.parametrize("status, healthy", [(200, True), (503, False)])
def test_image_healthcheck_follows_the_readiness_status(
    readyz_server: Readyz, status: int, healthy: bool
) -> None:
    readyz_server.status = status
    assert (run_check(healthcheck_argv(), readyz_server.server_port) == 0) is healthy


# --- compose ------------------------------------------------------------------------------


def test_compose_builds_the_image_from_the_repository_root() -> None:
    for name, service in compose_proxies().items():
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        assert context == ROOT, name
        assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE


def test_compose_runs_two_proxies_on_host_ports_8081_and_8082() -> None:
    proxies = compose_proxies()
    assert len(proxies) == 2
    host_ports = set()
    for name, service in proxies.items():
        settings = effective_settings(service.get("environment", {}))
        for mapping in service["ports"]:
            *_, host, inside = str(mapping).split(":")
            assert int(inside) == settings.port == DEFAULTS.port, name
            host_ports.add(int(host))
    assert host_ports == {8081, 8082}


def test_compose_proxies_set_only_variables_the_proxy_reads() -> None:
    for name, service in compose_proxies().items():
        env = service["environment"]
        assert set(env) <= KNOWN_VARIABLES, name
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["EDGE_BOOTSTRAP_KEY"].startswith("${EDGE_BOOTSTRAP_KEY"), "not from the env"
        assert "EDGE_REDIS_WAIT_REPLICAS" not in env, "a lone Redis has no replica to WAIT for"


def test_compose_proxies_start_after_redis_is_healthy() -> None:
    redis = COMPOSE_FILE["services"]["redis"]
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(str(v).split(":")[0] in COMPOSE_FILE["volumes"] for v in redis["volumes"])
    for name, service in compose_proxies().items():
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_compose_gives_each_proxy_a_data_volume_of_its_own() -> None:
    data_dir = IMAGE_ENV["EDGE_DATA_DIR"]
    seen = []
    for name, service in compose_proxies().items():
        mounted = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == data_dir]
        assert len(mounted) == 1 and mounted[0] in COMPOSE_FILE["volumes"], name
        seen += mounted
    assert len(seen) == len(set(seen)), "two proxies share a spool and a snapshot file"


def test_compose_grace_period_outlasts_the_shutdown_bound() -> None:
    for name, service in compose_proxies().items():
        settings = effective_settings(service["environment"])
        assert service.get("stop_signal", "SIGTERM") == "SIGTERM"
        assert seconds(service["stop_grace_period"]) >= settings.shutdown_timeout + MARGIN, name


@pytest.mark.parametrize("status, healthy", [(200, True), (503, False)])
def test_compose_healthcheck_follows_the_readiness_status(
    readyz_server: Readyz, status: int, healthy: bool
) -> None:
    readyz_server.status = status
    for service in compose_proxies().values():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and "/readyz" in test[-1]
        assert (run_check(test[1:], readyz_server.server_port) == 0) is healthy


# --- Kubernetes ---------------------------------------------------------------------------


def test_manifests_are_the_expected_kinds() -> None:
    kinds = {name: sorted(doc["kind"] for doc in docs) for name, docs in MANIFESTS.items()}
    assert kinds == {
        "edge.yaml": ["Deployment", "PodDisruptionBudget", "Service"],
        "secret.example.yaml": ["Secret"],
        "sidecar.yaml": ["Deployment"],
    }


def test_every_deployment_selects_its_own_pods() -> None:
    for d in deployments():
        assert selects(d["spec"]["selector"]["matchLabels"], d), d["metadata"]["name"]


def test_proxy_containers_set_only_variables_the_proxy_reads() -> None:
    for d, c in proxy_containers():
        names = [e["name"] for e in c["env"]]
        assert len(names) == len(set(names)), d["metadata"]["name"]
        assert set(names) <= KNOWN_VARIABLES, d["metadata"]["name"]
        effective_settings(literal_env(c))  # raises SettingsError on a bad value


def test_proxy_containers_take_redis_url_and_bootstrap_key_from_the_example_secret() -> None:
    (secret,) = documents("Secret")
    for _, c in proxy_containers():
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
        for name in ("REDIS_URL", "EDGE_BOOTSTRAP_KEY"):
            assert refs[name]["name"] == secret["metadata"]["name"]
            assert refs[name]["key"] in secret["stringData"]


def test_example_secret_bootstrap_key_is_a_placeholder_the_proxy_refuses() -> None:
    (secret,) = documents("Secret")
    placeholder = secret["stringData"]["bootstrap-key"]
    assert "REPLACE" in placeholder
    with pytest.raises(SettingsError):
        Settings.from_env({"EDGE_BOOTSTRAP_KEY": placeholder})


def test_proxy_container_port_is_the_port_it_serves() -> None:
    for d, c in proxy_containers():
        port = effective_settings(literal_env(c)).port
        assert port == DEFAULTS.port
        assert [p["containerPort"] for p in c["ports"]] == [port], d["metadata"]["name"]


def test_no_other_container_of_a_proxy_pod_binds_the_proxy_port() -> None:
    for d, proxy in proxy_containers():
        port = effective_settings(literal_env(proxy)).port
        for c in pod_containers(d["spec"]["template"]["spec"]):
            if c is not proxy:
                assert port not in [p["containerPort"] for p in c.get("ports", [])], c["name"]


@pytest.mark.parametrize(
    "probe, path", [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")]
)
def test_proxy_probes_hit_the_ops_routes(probe: str, path: str) -> None:
    assert path in OPS_PATHS
    for d, c in proxy_containers():
        get = c[probe]["httpGet"]
        assert get["path"] == path, d["metadata"]["name"]
        assert container_port(c, get["port"]) == effective_settings(literal_env(c)).port


def test_proxy_startup_probe_waits_for_liveness_not_readiness() -> None:
    """A startup probe on /readyz would restart a proxy that cannot reach Redis yet."""
    for d, c in proxy_containers():
        if "startupProbe" in c:
            probe = c["startupProbe"]
            assert probe["httpGet"]["path"] == "/healthz", d["metadata"]["name"]
            assert probe["periodSeconds"] * probe["failureThreshold"] >= 10  # API: up in 10 s


def test_sidecar_proxy_is_a_restartable_init_container() -> None:
    """A plain init container must exit before the app starts; `serve` never does."""
    for d in deployments():
        for c in d["spec"]["template"]["spec"].get("initContainers", []):
            assert not is_proxy(c) or c.get("restartPolicy") == "Always", d["metadata"]["name"]


def test_grace_period_outlasts_prestop_and_the_shutdown_bound() -> None:
    for d, c in proxy_containers():
        pod = d["spec"]["template"]["spec"]
        settings = effective_settings(literal_env(c))
        assert prestop_seconds(c) > 0, "no preStop: the endpoint outlives the listener"
        needed = sum(prestop_seconds(x) for x in pod_containers(pod))
        needed += settings.shutdown_timeout + MARGIN
        assert pod["terminationGracePeriodSeconds"] >= max(needed, 15), d["metadata"]["name"]


def test_proxy_runs_as_non_root_with_a_read_only_root_filesystem() -> None:
    image_uid = int(FINAL.last("USER").split(":")[0])
    for d, c in proxy_containers():
        pod_ctx = d["spec"]["template"]["spec"].get("securityContext", {})
        ctx = {**pod_ctx, **c["securityContext"]}
        assert ctx["runAsNonRoot"] is True
        assert ctx.get("runAsUser", image_uid) == image_uid != 0
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]


def test_proxy_writes_only_to_its_data_dir_volume() -> None:
    for d, c in proxy_containers():
        pod = d["spec"]["template"]["spec"]
        data_dir = str(effective_settings(literal_env(c)).data_dir)
        mounts = {m["mountPath"]: m for m in c["volumeMounts"] if not m.get("readOnly")}
        assert list(mounts) == [data_dir], d["metadata"]["name"]
        volume = next(v for v in pod["volumes"] if v["name"] == mounts[data_dir]["name"])
        assert "emptyDir" in volume or "persistentVolumeClaim" in volume


def test_proxy_has_resource_requests_and_limits() -> None:
    for d, c in proxy_containers():
        resources = c["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), d["metadata"]["name"]


def test_edge_service_targets_the_proxy_container_port() -> None:
    (service,) = documents("Service")
    assert service["spec"]["type"] == "ClusterIP"
    selector = service["spec"]["selector"]
    targets = [(d, c) for d, c in proxy_containers() if selects(selector, d)]
    assert len(targets) == 1, "the Service must select exactly the edge Deployment's pods"
    _, c = targets[0]
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80
    assert container_port(c, port["targetPort"]) == effective_settings(literal_env(c)).port


def test_edge_deployment_keeps_a_replica_through_disruptions() -> None:
    (service,) = documents("Service")
    (pdb,) = documents("PodDisruptionBudget")
    (edge,) = [d for d in deployments() if selects(service["spec"]["selector"], d)]
    assert edge["spec"]["replicas"] == 2
    assert selects(pdb["spec"]["selector"]["matchLabels"], edge)
    assert 1 <= pdb["spec"]["minAvailable"] < edge["spec"]["replicas"]
