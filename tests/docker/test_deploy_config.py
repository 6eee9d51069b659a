"""The files of deploy/ that cannot run here (no registry serves Prometheus or Grafana images):
checked by the tools that read them (promtool, compose) and against a real server's /metrics.
No container engine is needed."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docker.conftest import REPO_ROOT, compose_command, run_command, unavailable
from tests.e2e.apiclient import ApiClient
from tests.e2e.conftest import ServerLauncher

DEPLOY = REPO_ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "channelstream.json"
PROMETHEUS_DIR = DEPLOY / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
SECRET = "deploy-config-secret"
# series Prometheus makes itself for every scrape target
PROMETHEUS_SERIES = {"up"}
METRIC_NAME = re.compile(r"\b(channelstream_[a-z0-9_]+|up)\b(?!\s*\()")
# what the dashboard must show (issue 10): connections by transport, messages in/out, dropped
# frames and slow-consumer closes, broker errors and availability, latency by route, readiness
DASHBOARD_MUST_USE = {
    "channelstream_listeners",
    "channelstream_connections",
    "channelstream_messages_received_total",
    "channelstream_frames_sent_total",
    "channelstream_frames_dropped_total",
    "channelstream_slow_consumer_disconnects_total",
    "channelstream_broker_errors_total",
    "channelstream_broker_available",
    "channelstream_request_duration_seconds_bucket",
    "channelstream_ready",
    "up",
}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def dashboard_queries() -> list[str]:
    """Every PromQL text in the dashboard: panel targets and templating queries."""
    model = dashboard()
    queries = [target["expr"] for panel in model["panels"] for target in panel["targets"]]
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["definition"])
    return queries


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def metric_names(queries: list[str]) -> set[str]:
    # label values ("channelstream" as a job name) are quoted; drop them first
    unquoted = [re.sub(r'"[^"]*"', "", query) for query in queries]
    return {name for query in unquoted for name in METRIC_NAME.findall(query)}


@pytest.fixture(scope="module")
def served_metric_names(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Sample names of a real server's GET /metrics, after one request of each kind."""
    launcher = ServerLauncher(tmp_path_factory.mktemp("metrics-server"))
    try:
        server = launcher.start(settings={"secret": SECRET, "admin_secret": "deploy-admin"})
        api = ApiClient(server.base_url, SECRET)
        api.connect("alice")
        text = api.call("/metrics", method="GET").body.decode()
        names = set()
        for line in text.splitlines():
            if line and not line.startswith("#"):
                names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
        yield names
    finally:
        launcher.stop_all()


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        unavailable("promtool is not installed (Debian: apt-get install prometheus)")
    return path


# --- Grafana ------------------------------------------------------------------------------------


def test_dashboard_is_an_importable_dashboard_model() -> None:
    model = dashboard()
    assert model["uid"] and model["title"] and model["schemaVersion"] >= 30
    assert model["id"] is None  # a new dashboard wherever it is imported
    variables = {variable["name"]: variable for variable in model["templating"]["list"]}
    # the data source is a variable: import asks nothing, provisioning takes the default one
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${datasource}"}
    ids = [panel["id"] for panel in model["panels"]]
    assert len(ids) == len(set(ids))
    for panel in model["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == source and target["expr"], panel["title"]


def test_dashboard_shows_what_operators_need() -> None:
    assert metric_names(dashboard_queries()) >= DASHBOARD_MUST_USE
    latency = [query for query in dashboard_queries() if "histogram_quantile" in query]
    assert latency and all("route" in query for query in latency)


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    sources = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert [(s["type"], s["url"], s["isDefault"]) for s in sources] == [
        ("prometheus", "http://prometheus:9090", True)
    ]
    [provider] = load_yaml(provisioning / "dashboards" / "channelstream.yml")["providers"]
    grafana = load_yaml(DEPLOY / "compose.yml")["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]


# --- metric names against a real server ---------------------------------------------------------


def test_dashboard_and_alerts_use_only_metrics_the_server_exports(
    served_metric_names: set[str],
) -> None:
    used = metric_names(dashboard_queries() + [rule["expr"] for rule in alert_rules()])
    missing = used - served_metric_names - PROMETHEUS_SERIES
    assert not missing, f"not in /metrics: {sorted(missing)}; served: {sorted(served_metric_names)}"


def test_up_is_asked_of_the_scrape_job_prometheus_defines() -> None:
    [job] = load_yaml(PROMETHEUS_DIR / "prometheus.yml")["scrape_configs"]
    alert_queries = [rule["expr"] for rule in alert_rules()]
    for query in alert_queries:
        for selector in re.findall(r"\bup\{([^}]*)\}", query):
            assert f'job="{job["job_name"]}"' in selector, query
    assert [r["alert"] for r in alert_rules() if re.search(r"\bup\{", r["expr"])]


# --- Prometheus ---------------------------------------------------------------------------------


def test_alert_rules_pass_promtool() -> None:
    run_command([promtool(), "check", "rules", str(ALERTS)])
    run_command([promtool(), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])


def test_each_alert_fires_in_promtool_unit_tests() -> None:
    run_command([promtool(), "test", "rules", str(ALERTS_TEST)], cwd=PROMETHEUS_DIR)
    proven = {
        case["alertname"]
        for test in load_yaml(ALERTS_TEST)["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert proven == {rule["alert"] for rule in alert_rules()}


def test_required_alerts_exist() -> None:
    expressions = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert "channelstream_broker_available == 0" in expressions.values()  # Redis unreachable
    assert any(re.search(r"\bup\{", expr) for expr in expressions.values())  # node down
    assert any("channelstream_ready == 0" in expr for expr in expressions.values())
    assert any("channelstream_slow_consumer_disconnects_total" in e for e in expressions.values())
    assert any("channelstream_broker_errors_total" in e for e in expressions.values())


# --- nginx and compose --------------------------------------------------------------------------


def nginx_block(text: str, opening: str) -> str:
    """The block that starts with `opening` (up to its closing brace), comments and blank
    lines dropped and spaces collapsed."""
    start = text.index(opening)
    end = text.index("\n    }", start) if opening.startswith("    ") else text.index("\n}", start)
    lines = []
    for line in text[start:end].splitlines():
        code = line.split("#", 1)[0].strip()
        if code:
            lines.append(" ".join(code.split()))
    return "\n".join(lines)


def test_nginx_conf_is_the_one_docs_deployment_shows() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    doc = (REPO_ROOT / "docs" / "deployment.md").read_text()
    snippet = doc[doc.index("```nginx") : doc.index("```", doc.index("```nginx") + 3)]
    for opening in ("map $http_upgrade", "    location / {", "    location = /metrics {"):
        assert nginx_block(conf, opening) == nginx_block(snippet, opening), opening


def compose_config(*options: str) -> dict[str, Any]:
    command = [*compose_command(), "-f", str(DEPLOY / "compose.yml"), *options, "config"]
    config = yaml.safe_load(run_command(command).stdout)
    assert isinstance(config, dict)
    return config


def test_compose_file_publishes_one_port_and_profiles_add_monitoring() -> None:
    config = compose_config()
    default = {
        name: service
        for name, service in config["services"].items()
        if "monitoring" not in service.get("profiles", [])
    }
    assert set(default) == {"secrets", "redis", "node1", "node2", "nginx"}
    assert [name for name, service in default.items() if service.get("ports")] == ["nginx"]
    monitoring = compose_config("--profile", "monitoring")["services"]
    assert {"prometheus", "grafana"} <= set(monitoring)
    for node in ("node1", "node2"):
        environment = config["services"][node]["environment"]
        assert environment["CHANNELSTREAM_BROKER"] == "redis://redis:6379/0"
        assert environment["CHANNELSTREAM_SECRET_FILE"].startswith("/var/lib/channelstream/")
        assert "CHANNELSTREAM_SECRET" not in environment  # never a value in the file
