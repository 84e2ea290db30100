"""The operations files, checked without Docker or Kubernetes: Prometheus's config and
alert rules by promtool, and every dashboard and alert query pointing at metrics a
real hub exports at /metrics."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import yaml

from tests.harness import Arena

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "compose" / "prometheus"
DASHBOARDS = ROOT / "compose" / "grafana" / "dashboards"
METRIC = re.compile(r"\b((?:botarena|process)_[a-z_]+)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a validator: from the virtual environment's wheels, or (promtool) Debian's."""
    binary = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert binary, f"{name} is missing: make setup installs it"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return tool("promtool", *args)


def test_promtool_accepts_the_config_and_the_alert_rules() -> None:
    rules = promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 8 rules found" in rules.stdout
    config = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    alerts = {
        r["alert"]
        for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
        for r in g["rules"]
    }
    assert {"HubDown", "LLMSlow", "HighErrorRate", "AuditChainBroken", "AgentDrifted"} <= alerts


def dashboard_queries() -> dict[str, list[str]]:
    found = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        assert board["uid"] and board["title"] and board["panels"], path.name
        found[path.name] = [t["expr"] for p in board["panels"] for t in p["targets"]]
    return found


async def exported(arena: Arena) -> set[str]:
    async with aiohttp.ClientSession() as http, http.get(arena.url + "/metrics") as answer:
        text = await answer.text()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


async def test_every_dashboard_and_alert_query_names_a_metric_the_hub_exports(
    arena: Arena,
) -> None:
    names = await exported(arena)
    assert {"botarena_audit_chain_ok", "botarena_agents", "process_start_time_seconds"} <= names
    queries = dashboard_queries()
    assert set(queries) == {"hub.json", "agents.json", "kpis.json"}
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    queries["alerts.yml"] = [r["expr"] for g in rules for r in g["rules"]]
    for source, exprs in queries.items():
        for expr in exprs:
            used = METRIC.findall(expr)
            assert used or "up{" in expr, f"{source}: {expr} names no metric"
            for name in used:
                base = next(
                    (
                        name[: -len(s)]
                        for s in HISTOGRAM_SUFFIXES
                        if name.endswith(s) and name[: -len(s)] in names
                    ),
                    name,
                )
                assert base in names, f"{source}: {name} is not exported by the hub"


async def test_the_audit_chain_gauge_reports_a_broken_chain(hub_factory) -> None:
    arena = await hub_factory(audit_check_seconds=0.2)
    await arena.token("ada")  # an entry in the chain

    async def gauge() -> str:
        async with aiohttp.ClientSession() as http, http.get(arena.url + "/metrics") as answer:
            text = await answer.text()
        return next(
            line for line in text.splitlines() if line.startswith("botarena_audit_chain_ok")
        )

    for _ in range(50):
        if (await gauge()).endswith(" 1.0"):
            break
        await asyncio.sleep(0.1)
    assert (await gauge()).endswith(" 1.0")
    async with arena.store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    for _ in range(50):
        if (await gauge()).endswith(" 0.0"):
            break
        await asyncio.sleep(0.1)
    assert (await gauge()).endswith(" 0.0")


COMPOSE = ROOT / "compose" / "docker-compose.yml"


def test_the_compose_file_follows_the_compose_specification() -> None:
    checked = tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_service_is_healthchecked_ordered_and_offline() -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert {
        "hub",
        "worker",
        "nginx",
        "postgres",
        "redis",
        "chroma",
        "minio",
        "ollama",
        "ollama-gpu",
        "migrate",
        "prometheus",
        "grafana",
        "loki",
        "promtail",
    } <= set(services)
    assert services["hub"]["deploy"]["replicas"] == 2
    assert services["worker"]["deploy"]["replicas"] == "${BOTARENA_WORKERS:-2}"
    assert services["migrate"]["restart"] == "no"
    assert services["hub"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    for name, service in services.items():
        if name != "migrate":
            assert service["healthcheck"]["test"], f"{name} has no healthcheck"
        for dep, how in service.get("depends_on", {}).items():
            assert dep in services and how["condition"] in (
                "service_healthy",
                "service_completed_successfully",
            ), f"{name} -> {dep}"
        image = service["image"]
        assert image.startswith("${REGISTRY:-}") and not image.endswith(":latest"), image
        assert "build" not in service, f"{name} builds: images come from the site's registry"
        nets = service["networks"]
        assert "internal" in nets, f"{name} is not on the internal network"
        if name != "nginx":
            assert "edge" not in nets and "ports" not in service, f"{name} is exposed"
    assert spec["networks"]["internal"]["internal"] is True  # no egress
    gpu = services["ollama-gpu"]
    assert gpu["profiles"] == ["gpu"] and services["ollama"]["profiles"] == ["cpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    volumes = [v.split(":")[0] for s in services.values() for v in s.get("volumes", [])]
    named = [v for v in volumes if not v.startswith((".", "/"))]
    assert set(named) <= set(spec["volumes"]), "every volume is a named volume"


def test_the_image_builds_offline_runs_unprivileged_and_is_healthchecked() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    installs = [line for line in lines if "pip install" in line]
    assert installs and all("--no-index" in line for line in installs)
    user = next(line for line in lines if line.startswith("USER "))
    assert "root" not in user and user != "USER 0"
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    assert not any(line.startswith(("ADD http", "RUN curl", "RUN wget")) for line in lines)


def render(overlay: str) -> list[dict]:
    rendered = tool("kubectl", "kustomize", str(ROOT / "k3s" / "overlays" / overlay))
    assert rendered.returncode == 0, rendered.stderr
    return [d for d in yaml.safe_load_all(rendered.stdout) if d]


def test_the_k3s_overlays_render_and_follow_the_kubernetes_schemas(tmp_path: Path) -> None:
    for overlay in ("single-node", "ha"):
        out = tmp_path / f"{overlay}.yaml"
        out.write_text(yaml.safe_dump_all(render(overlay)))
        checked = tool("kubernetes-validate", "--strict", "--quiet", str(out))
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_k3s_manifests_keep_the_site_running_and_offline() -> None:
    single, ha = (
        {(d["kind"], d["metadata"]["name"]): d for d in render(o)} for o in ("single-node", "ha")
    )
    assert single[("Deployment", "hub")]["spec"]["replicas"] == 1
    assert ha[("Deployment", "hub")]["spec"]["replicas"] == 3
    assert ha[("Deployment", "worker")]["spec"]["replicas"] == 2
    for name in ("postgres", "redis", "chroma", "minio", "ollama"):
        assert ("StatefulSet", name) in ha, f"{name} is not a StatefulSet"
    assert {("PodDisruptionBudget", "hub"), ("PodDisruptionBudget", "worker")} <= set(ha)
    policy = ha[("NetworkPolicy", "deny-egress-outside-namespace")]["spec"]
    assert policy["podSelector"] == {} and policy["policyTypes"] == ["Egress"]
    assert all("ipBlock" not in peer for rule in policy["egress"] for peer in rule["to"])
    gpu = ha[("StatefulSet", "ollama")]["spec"]["template"]["spec"]
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nodeSelector" not in single[("StatefulSet", "ollama")]["spec"]["template"]["spec"]
    for (kind, name), doc in ha.items():
        if kind not in ("Deployment", "StatefulSet", "Job"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            resources = container["resources"]
            assert resources["requests"] and resources["limits"], f"{name}: resources"
            assert container["image"].startswith("registry.site.local:5000/"), container["image"]
            if kind != "Job":
                assert "readinessProbe" in container and "livenessProbe" in container, name
