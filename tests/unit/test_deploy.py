"""deploy/ checked against the code it deploys: every file parses, the Kubernetes objects point at each other,
every rtserver command line parses with the real argument parser and its settings validate, and ports, probes,
metric names and grace periods agree with the Dockerfile, the server, the settings and rtserver/metrics.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from rtserver.cli import _parser
from rtserver.errors import ConfigError
from rtserver.metrics import Metrics
from rtserver.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
LABEL = {"app.kubernetes.io/name": "rtserver"}


def serve_settings(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    """Parse a command line as ``rtserver serve`` does and validate its settings: an unknown flag fails the test."""
    start = next(i for i, a in enumerate(argv) if a.endswith("rtserver")) + 1
    try:
        ns = _parser().parse_args(argv[start:])
    except SystemExit:
        pytest.fail(f"rtserver does not take {argv[start:]} (see rtserver serve --help)")
    assert ns.command == "serve", argv
    flags = {k: v for k, v in vars(ns).items() if k not in ("command", "config")}
    if str(flags.get("redis_url") or "").startswith("$("):  # Kubernetes fills it from a Secret at run time
        flags["redis_url"] = "redis://redis:6379/0"
    return load_settings(None, env or {}, flags)


def seconds(value: str | int) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)?", str(value))
    assert m, value
    return int(m[1]) * {"ms": 0.001, "s": 1, None: 1, "m": 60}[m[2]]


def dockerfile() -> dict[str, str]:
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    return {ln.split(None, 1)[0]: ln.split(None, 1)[1] for ln in lines if ln.strip() and not ln.startswith("#")}


def image_port() -> int:
    return int(dockerfile()["EXPOSE"].split("/")[0])


def image_data_dir() -> str:
    key, _, value = dockerfile()["ENV"].partition("=")
    assert key == "RTSERVER_DATA_DIR"
    return value


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # type: ignore[no-any-return]


def nodes() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if "serve" in s.get("command", [])}


def k8s() -> dict[str, dict[str, Any]]:
    """The objects kustomization.yaml lists, by kind (one of each here)."""
    kust = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    objs = [d for f in kust["resources"] for d in yaml.safe_load_all((DEPLOY / "k8s" / f).read_text()) if d]
    by_kind = {o["kind"]: o for o in objs}
    assert len(by_kind) == len(objs), "one object of each kind"
    return by_kind


def container() -> dict[str, Any]:
    (c,) = k8s()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c  # type: ignore[no-any-return]


def test_an_unknown_flag_fails_the_check() -> None:
    with pytest.raises(pytest.fail.Exception, match="--no-such-flag"):
        serve_settings([".venv/bin/rtserver", "serve", "--no-such-flag", "1"])


def test_the_dockerfile_serves_on_the_port_it_exposes() -> None:
    d = dockerfile()
    s = serve_settings(json.loads(d["CMD"]))
    assert (s.host, s.port) == ("0.0.0.0", image_port())
    assert f"127.0.0.1:{image_port()}/readyz" in d["HEALTHCHECK"]
    assert d["STOPSIGNAL"] == "SIGTERM"


def test_compose_runs_three_nodes_on_one_redis() -> None:
    services, found = compose()["services"], nodes()
    assert sorted(found) == ["node1", "node2", "node3"]
    ids = set()
    for name, svc in found.items():
        s = serve_settings(svc["command"])
        assert (s.host, s.port) == ("0.0.0.0", image_port()), name
        host, port = re.fullmatch(r"redis://([\w-]+):(\d+)/0", s.redis_url).groups()  # type: ignore[union-attr]
        assert host in services and port == "6379"
        ids.add(s.node_id)
        # SIGTERM drains then hands over: docker must not kill the node before that is done.
        assert seconds(svc["stop_grace_period"]) > s.drain_timeout + s.lease_ttl, name
        assert (DEPLOY / svc["build"] / "Dockerfile").is_file()
        for volume in svc["volumes"]:
            assert volume.split(":")[0] in compose()["volumes"]
        assert [v.split(":")[1] for v in svc["volumes"]] == [image_data_dir()], "the journal on the node's volume"
    assert ids == set(found), "each node its own --node-id"


def test_compose_redis_acknowledges_only_what_is_on_disk() -> None:
    redis = compose()["services"]["redis"]
    cmd = " ".join(redis["command"])
    assert "--appendonly yes" in cmd and "--appendfsync always" in cmd
    assert int(redis["image"].split(":")[1].split(".")[0]) >= 7, "sharded pub/sub and functions need Redis 7"


def nginx_conf() -> str:
    text = re.sub(r"#[^\n]*", "", (DEPLOY / "nginx.conf").read_text())
    depth = 0
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, "unbalanced braces in nginx.conf"
    assert depth == 0, "unbalanced braces in nginx.conf"
    return text


def block(text: str, head: str) -> str:
    """The body of the first ``head { ... }`` block (no nested blocks inside the ones looked at here)."""
    m = re.search(r"(?<![\w$])" + re.escape(head) + r"\s*\{([^{}]*)\}", text)
    assert m, head
    return m[1]


def directives(body: str) -> list[list[str]]:
    return [d.split() for d in body.split(";") if d.strip()]


def test_nginx_balances_websockets_over_the_compose_nodes() -> None:
    text = nginx_conf()
    servers = {d[1] for d in directives(block(text, "upstream rtserver")) if d[0] == "server"}
    assert servers == {f"{n}:{image_port()}" for n in nodes()}
    ws = directives(block(text, "location /"))
    assert ["proxy_pass", "http://rtserver"] in ws
    assert ["proxy_http_version", "1.1"] in ws
    assert ["proxy_set_header", "Upgrade", "$http_upgrade"] in ws
    assert ["proxy_set_header", "Connection", "$connection_upgrade"] in ws
    assert "map $http_upgrade $connection_upgrade" in " ".join(text.split())
    read = next(d[1] for d in ws if d[0] == "proxy_read_timeout")
    assert seconds(read) > 2 * Settings().heartbeat, "an idle conversation outlives the proxy's read timeout"
    assert ["proxy_pass", "http://rtserver"] in directives(block(text, "location = /readyz"))
    (listen,) = re.findall(r"^\s*listen\s+(\d+)\s*;", text, re.M)
    nginx = compose()["services"]["nginx"]
    assert nginx["ports"] == [f"{listen}:{listen}"]
    assert any(v.startswith("./nginx.conf:") for v in nginx["volumes"])
    assert nginx["depends_on"] == {n: {"condition": "service_healthy"} for n in nodes()}


def test_k8s_objects_point_at_each_other() -> None:
    kust = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert set(kust["resources"]) == {"deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"}
    o = k8s()
    dep = o["Deployment"]
    assert dep["spec"]["selector"]["matchLabels"] == LABEL == dep["spec"]["template"]["metadata"]["labels"]
    assert o["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert o["Service"]["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert {p["targetPort"] for p in o["Service"]["spec"]["ports"]} <= ports.keys()
    target = o["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", dep["metadata"]["name"])
    assert o["HorizontalPodAutoscaler"]["spec"]["minReplicas"] > o["PodDisruptionBudget"]["spec"]["maxUnavailable"]


def test_k8s_probes_ask_readyz_and_healthz_on_the_served_port() -> None:
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    probes = {k: c[k]["httpGet"] for k in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz" == probes["startupProbe"]["path"]
    env = {e["name"]: e.get("value", "") for e in c["env"] if e["name"].startswith("RTSERVER_")}
    s = serve_settings(c["command"] + c["args"], env)
    assert {ports[p["port"]] for p in probes.values()} == {s.port} == {image_port()}


def test_k8s_command_parses_and_the_grace_period_outlasts_the_hand_over() -> None:
    o, c = k8s(), container()
    defined = {e["name"] for e in c["env"]}
    for ref in re.findall(r"\$\((\w+)\)", " ".join(c["args"])):
        assert ref in defined, f"$({ref}) is not in the container's env: Kubernetes would pass it literally"
    env = {e["name"]: e["value"] for e in c["env"] if e["name"].startswith("RTSERVER_")}
    s = serve_settings(c["command"] + c["args"], env)
    assert s.host == "0.0.0.0" and s.redis_url and s.node_id
    pod = o["Deployment"]["spec"]["template"]["spec"]
    assert [m["mountPath"] for m in c["volumeMounts"]] == [image_data_dir()]
    assert pod["terminationGracePeriodSeconds"] > s.drain_timeout + s.lease_ttl
    # A Service named rtserver would put RTSERVER_PORT=tcp://... in the pod's environment, which stops start-up:
    with pytest.raises(ConfigError, match="RTSERVER_PORT"):
        load_settings(None, {"RTSERVER_PORT": "tcp://10.0.0.1:80"}, {})
    if o["Service"]["metadata"]["name"] == "rtserver":
        assert pod["enableServiceLinks"] is False


def exposed_metrics() -> dict[str, str]:
    """Metric name -> type, from a rendering of the server's own registry."""
    m = Metrics()
    m.watch_engines(lambda: {"default": {"waiting_turns": 0, "turns": 1}})
    m.watch_store(
        SimpleNamespace(degraded=False, damaged_records=0), SimpleNamespace(sessions={}, paged_in=0, paged_out=0)
    )
    text = m.render().decode()
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def test_the_hpa_scales_on_gauges_the_server_exports_and_the_adapter_serves() -> None:
    hpa = k8s()["HorizontalPodAutoscaler"]["spec"]["metrics"]
    names = {m["pods"]["metric"]["name"] for m in hpa if m["type"] == "Pods"}
    assert names and len(names) == len(hpa)
    exported = exposed_metrics()
    assert {exported.get(n) for n in names} == {"gauge"}
    adapter = yaml.safe_load((DEPLOY / "k8s" / "prometheus-adapter-values.yaml").read_text())
    served = {r["seriesQuery"].split("{")[0] for r in adapter["rules"]["custom"]}
    assert names <= served
