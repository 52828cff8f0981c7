"""What ships for operators: the Prometheus alert rules (valid for promtool, their own unit
tests passing) and the Grafana dashboard name only metrics /metrics really exports, and
/metrics is closed to scrapers without METRICS_TOKEN when it is set."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import SecretStr

from gateway.app import create_app
from tests.conftest import graphql

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "billing-gateway.json"
METRIC = re.compile(r"\bbilling_[a-z0-9_]+")
# What a scrape adds to a family's name (as its TYPE line gives it) for each sample.
SUFFIXES = {
    "counter": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package: run tests/clients/install"
    return subprocess.run(
        [promtool, *args], cwd=ALERTS.parent, capture_output=True, text=True, check=False
    )


def test_the_alert_rules_are_valid():
    checked = _promtool("check", "rules", ALERTS.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_alert_rules_fire_as_their_unit_tests_say():
    tested = _promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _alert_expressions() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def _dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_the_seeds_alerts_are_all_there():
    names = {
        rule["alert"]
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
    }
    assert {
        "BillingPaymentFailureRateHigh",
        "BillingWebhookProcessingFailures",
        "BillingStripeApiErrors",
        "BillingSubscriptionCreationFailures",
        "BillingWebhookInboxLagging",
    } <= names


async def _exported_samples(client: httpx.AsyncClient) -> set[str]:
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    families = re.findall(r"^# TYPE (\S+) (\S+)$", answer.text, re.MULTILINE)
    return {name + suffix for name, kind in families for suffix in SUFFIXES.get(kind, ("",))}


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
async def test_every_metric_named_is_exported(client: httpx.AsyncClient, source: str):
    expressions = _alert_expressions() if source == "alerts" else _dashboard_expressions()
    named = {name for expression in expressions for name in METRIC.findall(expression)}
    assert len(named) >= 5
    assert named - await _exported_samples(client) == set()


async def test_a_creation_is_counted_by_outcome(client, billing, token_for):
    query = """mutation ($input: CreateSubscriptionInput!) {
      createSubscription(input: $input) { userErrors { code } } }"""
    before = await client.get("/metrics")
    for card in ("pm_card_chargeDeclined", "pm_card_visa"):
        variables = {"input": {"planId": billing.plan_id("pro_monthly"), "paymentMethodId": card}}
        await graphql(client, query, variables, token=token_for(f"counted-{card}"))
    after = await client.get("/metrics")

    def count(text: str, outcome: str) -> float:
        found = re.search(
            rf'^billing_subscription_creations_total\{{outcome="{outcome}"\}} (\S+)$',
            text,
            re.MULTILINE,
        )
        return float(found.group(1)) if found else 0.0

    for outcome in ("card_declined", "created"):
        assert count(after.text, outcome) == count(before.text, outcome) + 1


@pytest.fixture
async def guarded_client(settings, db):
    guarded = settings.model_copy(update={"metrics_token": SecretStr("scrape-me-please-0123")})
    transport = httpx.ASGITransport(app=create_app(guarded, database=db))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        yield http


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token", "scrape-me-please-0123", "Basic c2NyYXBl"]
)
async def test_metrics_refuse_a_scraper_without_the_token(guarded_client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    answer = await guarded_client.get("/metrics", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "billing_" not in answer.text


async def test_metrics_answer_the_scraper_with_the_token(guarded_client):
    answer = await guarded_client.get(
        "/metrics", headers={"Authorization": "Bearer scrape-me-please-0123"}
    )
    assert answer.status_code == 200 and "billing_webhook_events" in answer.text
