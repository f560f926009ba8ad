"""deploy/grafana/bulkops.json: every panel charts metrics the service exposes, by labels
they have, from the data source Grafana is given."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from bulkops import metrics

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads((GRAFANA / "bulkops.json").read_text())
    assert isinstance(data, dict)
    return data


def charts(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def exposed() -> dict[str, set[str]]:
    """Every sample name of bulkops' metrics -> the labels it may carry."""
    names: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        if not family.name.startswith("bulkops_"):
            continue
        metric = next(
            m
            for m in vars(metrics).values()
            if isinstance(m, MetricWrapperBase) and m._name == family.name
        )
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = set(metric._labelnames) | (
                {"le"} if suffix == "_bucket" else set()
            )
    return names


def test_every_expression_names_metrics_and_labels_that_exist(
    dashboard: dict[str, Any],
) -> None:
    known = exposed()
    for panel in charts(dashboard):
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            used = re.findall(r"\bbulkops_\w+", expr)
            assert used, expr
            for name in used:
                assert name in known, f"{panel['title']}: no metric {name}"
                grouped = re.findall(r"by \(([^)]*)\)", expr)
                for label in ",".join(grouped).split(","):
                    label = label.strip()
                    assert not label or label in known[name], f"{name} has no label {label}"


def test_the_dashboard_charts_what_operators_watch(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(t["expr"] for p in charts(dashboard) for t in p["targets"])
    for needed in (
        "sum by (status) (rate(bulkops_jobs_total",
        "sum by (outcome) (rate(bulkops_items_total",
        "histogram_quantile(0.5, sum by (le) (rate(bulkops_batch_duration_seconds_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(bulkops_batch_duration_seconds_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(bulkops_job_pickup_seconds_bucket",
        # Each API process reports the same depth, read from Redis.
        "max by (priority) (bulkops_queue_depth)",
        "sum(bulkops_running_jobs)",
        "sum(bulkops_subscriptions)",
        "rate(bulkops_http_requests_total",
        "histogram_quantile(0.95, sum by (le, route) (rate("
        "bulkops_http_request_duration_seconds_bucket",
    ):
        assert needed in exprs, needed


def test_panels_use_the_provisioned_data_source_and_do_not_overlap(
    dashboard: dict[str, Any],
) -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"] for d in provisioned["datasources"]}
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids, panel["title"]
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
