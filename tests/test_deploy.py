"""The Kubernetes manifests in deploy/k8s/, validated offline (no cluster here).

Every document validates against the Kubernetes API schemas of the oldest and newest
versions we state (docs/deploy.md), strictly (an unknown field is an error), with
``kubernetes-validate`` and the schemas it ships. Then what matters for statekeel: the
probes call ``statekeel doctor --quick``, secrets are referenced and never written in, every
container has resources, the SQLite pattern gives each pod its own volume, Redis states its
``appendfsync``, and the grace period covers what the agent does on SIGTERM.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
VERSIONS = ["1.29.0", "1.37.0"]
"""The Kubernetes versions the manifests are stated to work with (oldest, newest): docs/deploy.md."""
PATTERNS = ["redis", "statefulset-sqlite", "postgres", "tiered"]
PROBE = ["statekeel", "doctor", "--quick"]
CLOSING_SECONDS = 5
"""What the grace period keeps for closing the store after the drain."""


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((f"{path.relative_to(K8S)}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


DOCS = _documents()
WORKLOADS = [(name, d) for name, d in DOCS if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc["spec"]["template"]["spec"])


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _agents() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, pod spec, container) of every long-running container that opens a statekeel store."""
    return [
        (name, _pod(d), c) for name, d in WORKLOADS if d["kind"] != "Job"
        for c in _pod(d)["containers"] if "STATEKEEL_URL" in _env(c)
    ]


AGENTS = _agents()


def test_every_pattern_has_its_manifests() -> None:
    for pattern in PATTERNS:
        assert any(name.startswith(f"{pattern}/") for name, _, _ in AGENTS), pattern
    assert len(AGENTS) == len(PATTERNS)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name,doc", DOCS, ids=[n for n, _ in DOCS])
def test_every_manifest_validates_against_the_kubernetes_schema(name: str, doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError naming the field


def test_a_misspelt_field_fails_the_validation() -> None:
    """The check above can fail: a field Kubernetes does not know is reported."""
    doc = yaml.safe_load(yaml.safe_dump(WORKLOADS[0][1]))
    doc["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)


@pytest.mark.parametrize("name,pod,container", AGENTS, ids=[n for n, _, _ in AGENTS])
def test_agent_probes_call_the_quick_doctor(name: str, pod: dict[str, Any], container: dict[str, Any]) -> None:
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == PROBE, (name, probe)
        assert container[probe]["timeoutSeconds"] >= 5, (name, probe)  # a Python start-up and one round trip
    live, ready = container["livenessProbe"], container["readinessProbe"]
    # a store outage takes pods out of the Service long before it restarts them (a restart fixes nothing)
    assert live["failureThreshold"] * live["periodSeconds"] > ready["failureThreshold"] * ready["periodSeconds"]


@pytest.mark.parametrize("name,doc", WORKLOADS, ids=[n for n, _ in WORKLOADS])
def test_every_container_has_resources(name: str, doc: dict[str, Any]) -> None:
    for c in _pod(doc)["containers"]:
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], (name, c["name"])
        assert c["resources"]["limits"]["memory"], (name, c["name"])


_SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|_URL$|^URL$|KEY", re.I)
_USERINFO = re.compile(r"://[^/@\s]*?:([^@/\s]+)@")
_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@pytest.mark.parametrize("name,doc", WORKLOADS, ids=[n for n, _ in WORKLOADS])
def test_secrets_are_referenced_never_written_in(name: str, doc: dict[str, Any]) -> None:
    for c in _pod(doc)["containers"]:
        defined: dict[str, dict[str, Any]] = {}
        for env in c.get("env", []):
            value = env.get("value")
            if value is not None:
                refs = _REF.findall(value)
                # Kubernetes expands $(VAR) only for variables defined earlier in the list
                assert all(r in defined for r in refs), (name, env["name"], refs)
                for password in _USERINFO.findall(value):
                    ref = _REF.fullmatch(password)
                    assert ref and "secretKeyRef" in defined[ref[1]].get("valueFrom", {}), (name, env["name"])
            elif _SECRETISH.search(env["name"]):
                assert "secretKeyRef" in env["valueFrom"], (name, env["name"])
            defined[env["name"]] = env
    assert "Secret" not in {d["kind"] for _, d in DOCS}, "create Secrets with kubectl; never commit their values"


def test_no_manifest_holds_a_literal_password() -> None:
    """Outside comments (which show the `kubectl create secret` line with a placeholder)."""
    for path in K8S.rglob("*.yaml"):
        lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
        for value in _USERINFO.findall("\n".join(lines)):
            assert _REF.fullmatch(value), (path, "a password written into a URL")


def test_the_sqlite_statefulset_gives_each_pod_its_own_volume() -> None:
    (doc,) = [d for n, d in WORKLOADS if n.startswith("statefulset-sqlite/") and d["kind"] == "StatefulSet"]
    (claim,) = doc["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    (container,) = _pod(doc)["containers"]
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}[claim["metadata"]["name"]]
    url = _env(container)["STATEKEEL_URL"]["value"]
    assert url.startswith(f"sqlite:///{mount}/"), "the database file lives on the pod's own volume"


def test_redis_states_its_append_only_durability() -> None:
    (doc,) = [d for n, d in WORKLOADS if n.startswith("redis/") and d["kind"] == "StatefulSet"]
    args = _pod(doc)["containers"][0]["command"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] in ("always", "everysec")
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert doc["spec"]["volumeClaimTemplates"], "the AOF must outlive the pod"


def _seconds(env: dict[str, dict[str, Any]], name: str) -> float:
    return float(env[name]["value"])


def _flush_interval(url: str) -> float:
    found = re.search(r"[?&]flush_interval=([0-9.]+)", url)
    return float(found[1]) if found and "mode=write-behind" in url else 0.0


@pytest.mark.parametrize("name,pod,container", AGENTS, ids=[n for n, _, _ in AGENTS])
def test_the_grace_period_covers_drain_flush_and_lease(
    name: str, pod: dict[str, Any], container: dict[str, Any]
) -> None:
    env = _env(container)
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    flush = _flush_interval(env["STATEKEEL_URL"].get("value", ""))
    needed = float(pre_stop[1]) + _seconds(env, "AGENT_DRAIN_SECONDS") + flush + CLOSING_SECONDS
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= needed, f"{name}: {grace}s < preStop + drain + flush + closing = {needed}s"
    assert grace >= _seconds(env, "AGENT_LEASE_SECONDS"), name


def test_the_tiered_pattern_uses_write_behind_with_a_flush_interval() -> None:
    (url,) = [_env(c)["STATEKEEL_URL"]["value"] for n, _, c in AGENTS if n.startswith("tiered/")]
    assert url.startswith("tiered://?hot=redis://") and "&cold=" in url
    assert _flush_interval(url) > 0


def test_the_example_agent_reads_what_the_manifests_set() -> None:
    source = (K8S / "agent_example.py").read_text()
    for _, _, container in AGENTS:
        for name in _env(container):
            if name.startswith("AGENT_"):
                assert f"'{name}'" in source or f'"{name}"' in source, name


def test_the_deploy_guide_covers_every_manifest_and_is_in_the_site() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for path in K8S.rglob("*.yaml"):
        assert str(path.relative_to(ROOT)) in guide, path
    assert "deploy.md" in (ROOT / "mkdocs.yml").read_text()
    assert "docs/deploy.md" in (ROOT / "README.md").read_text()
