"""The reference billing app as the package ships it: served at /app from the committed build,
which is what web/'s sources build to, typed by the schema the gateway serves; and its
development sign-in, which mints nothing in production."""

import filecmp
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from gateway.web_app import BUILD_DIR
from schema.schema import schema_sdl
from tests.conftest import graphql

WEB = Path(__file__).resolve().parent.parent / "web"
VIEWER = "{ viewer { userId } }"
METRICS = "{ admin { metrics { activeSubscriptions } } }"


def test_the_apps_schema_is_the_served_one():
    assert (WEB / "schema.graphql").read_text() == schema_sdl() + "\n"


def _npm_tool(name: str) -> str:
    tool = WEB / "node_modules" / ".bin" / name
    assert shutil.which("node") and tool.exists(), "run tests/clients/install (npm ci in web/)"
    return str(tool)


def _differences(left: Path, right: Path) -> list[str]:
    compared = filecmp.dircmp(left, right)
    found = [f"{left / name}" for name in compared.left_only + compared.right_only]
    found += [f"{left / name}" for name in compared.diff_files + compared.funny_files]
    for name in compared.common_dirs:
        found += _differences(left / name, right / name)
    return found


def test_the_committed_build_is_what_the_sources_build(tmp_path: Path):
    """Codegen and Vite rerun on a copy of web/: the generated types and the build must equal
    the committed ones byte for byte (rebuild: cd web && npm run codegen && npm run build)."""
    codegen, vite = _npm_tool("graphql-codegen"), _npm_tool("vite")
    copy = tmp_path / "web"
    shutil.copytree(WEB, copy, ignore=shutil.ignore_patterns("node_modules"))
    (copy / "node_modules").symlink_to(WEB / "node_modules")
    shutil.rmtree(copy / "src" / "gql")
    out = tmp_path / "build"
    env = {**os.environ, "CI": "true"}
    for command in ([codegen, "--config", "codegen.ts"], [vite, "build", "--outDir", str(out)]):
        done = subprocess.run(
            command, cwd=copy, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr

    assert _differences(WEB / "src" / "gql", copy / "src" / "gql") == []
    assert _differences(BUILD_DIR, out) == []


async def test_the_app_is_served_at_app(dev_client: httpx.AsyncClient):
    redirect = await dev_client.get("/app")
    assert redirect.status_code == 308 and redirect.headers["location"] == "/app/"

    page = await dev_client.get("/app/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    scripts = re.findall(r'src="(/app/assets/[^"]+\.js)"', page.text)
    assert scripts, page.text
    script = await dev_client.get(scripts[0])
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert (await dev_client.get("/app/assets/missing.js")).status_code == 404


async def test_the_app_is_served_in_production_too(production_client: httpx.AsyncClient):
    page = await production_client.get("/app/")
    assert page.status_code == 200 and "/app/assets/" in page.text


async def test_a_development_token_signs_in_the_named_user(client: httpx.AsyncClient):
    answer = await client.post("/app/dev-token", json={"user": "ada.l@example"})
    assert answer.status_code == 200
    token = answer.json()["token"]

    assert (await graphql(client, VIEWER, token=token))["data"]["viewer"][
        "userId"
    ] == "ada.l@example"
    refused = await graphql(client, METRICS, token=token)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_development_admin_token_reads_admin_fields(client: httpx.AsyncClient):
    answer = await client.post("/app/dev-token", json={"user": "root", "admin": True})
    result = await graphql(client, METRICS, token=answer.json()["token"])
    assert "errors" not in result and result["data"]["admin"]["metrics"]["activeSubscriptions"] >= 0


@pytest.mark.parametrize("user", ["", "two words", "-dash-first", "x" * 65, "<script>"])
async def test_a_user_name_outside_the_rules_gets_no_token(client: httpx.AsyncClient, user: str):
    answer = await client.post("/app/dev-token", json={"user": user})
    assert answer.status_code == 422
    assert "token" not in answer.json()


async def test_production_mints_no_token(production_client: httpx.AsyncClient):
    answer = await production_client.post("/app/dev-token", json={"user": "mallory", "admin": True})
    assert answer.status_code in (404, 405)
    assert "token" not in answer.text


async def test_billing_config_names_the_sandboxs_stripe_js(client: httpx.AsyncClient, settings):
    result = await graphql(client, "{ billingConfig { sandbox stripeJsUrl } }")
    config = result["data"]["billingConfig"]
    assert config == {
        "sandbox": True,
        "stripeJsUrl": f"{settings.stripe_api_base}/_sandbox/stripe.js",
    }


async def test_billing_config_names_stripes_own_stripe_js_with_a_key(
    production_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
):
    """Also with the database unreachable: the cost budget fails open, and says so."""
    answer = await production_client.post(
        "/graphql", json={"query": "{ billingConfig { sandbox stripeJsUrl } }"}
    )
    assert answer.json()["data"]["billingConfig"] == {
        "sandbox": False,
        "stripeJsUrl": "https://js.stripe.com/v3/",
    }
    assert "cost budget unavailable, operation admitted uncharged" in caplog.text
