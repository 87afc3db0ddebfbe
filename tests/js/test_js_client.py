"""The JS reference client (clients/js) and the demo page, run from pytest so that scripts/test covers them: Node's
test runner for the client's unit tests and golden vectors, the client against a real ``rtserver serve`` from Node,
and the demo page driven in headless Chromium. Each test runs ``node --test`` on some files and passes when every
test in them ran and passed. Without Node.js 20+, the npm packages or Chromium (scripts/install-js installs them)
these skip on a laptop and fail in CI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import ROOT, SCRIPTED, require
from ..helpers import http_get

JS = ROOT / "clients" / "js"
TIMEOUT = 300  # a bound against hangs; the slowest file takes about 30 s


def _node_major() -> int:
    if shutil.which("node") is None:
        return 0
    out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout
    return int(re.match(r"v(\d+)", out).group(1)) if out.startswith("v") else 0  # type: ignore[union-attr]


@pytest.fixture(scope="session")
def js() -> Path:
    require(_node_major() >= 20, "Node.js 20 or newer is not installed (scripts/install-js says how)")
    require(
        (JS / "node_modules" / ".package-lock.json").is_file(), "clients/js has no npm packages: scripts/install-js"
    )
    return JS


@pytest.fixture(scope="session")
def chromium(js: Path) -> str:
    found = os.environ.get("RTSERVER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    require(found is not None, "Chromium is not installed: apt-get install chromium (scripts/install-js, as root)")
    return str(found)


def node_test(*files: str, env: dict[str, str] | None = None, at_least: int = 1) -> None:
    """Runs ``node --test`` on ``files``; every test must run (none skipped) and pass."""
    proc = subprocess.run(
        ["node", "--test", "--test-reporter=tap", *files],
        cwd=JS,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    out = proc.stdout + proc.stderr
    counts = {k: int(v) for k, v in re.findall(r"^# (pass|fail|skipped|cancelled) (\d+)$", out, re.M)}
    ok = proc.returncode == 0 and counts.get("pass", 0) >= at_least
    assert ok and counts.get("fail") == counts.get("skipped") == counts.get("cancelled") == 0, out[-6000:]


def test_unit_tests_and_golden_vectors(js: Path) -> None:
    node_test("test/unit/", at_least=100)


def test_the_committed_bundle_and_types_are_built_from_src(js: Path, tmp_path: Path) -> None:
    """The README's first command needs no Node, so the built module is committed: it must be what src/ builds to."""
    subprocess.run(["node", "build.mjs", str(tmp_path)], cwd=JS, check=True, timeout=TIMEOUT)
    built = (tmp_path / "rtclient.js").read_bytes()
    assert built == (JS / "dist" / "rtclient.js").read_bytes(), "clients/js: run npm run build and commit dist/"
    assert built == (ROOT / "rtserver" / "demo" / "rtclient.js").read_bytes(), "run npm run build in clients/js"
    tsc = JS / "node_modules" / ".bin" / "tsc"
    subprocess.run([str(tsc), "-p", "tsconfig.json", "--outDir", str(tmp_path / "types")], cwd=JS, check=True)
    for d in (JS / "dist" / "types").iterdir():
        assert (tmp_path / "types" / d.name).read_bytes() == d.read_bytes(), d.name


def test_against_a_real_server(js: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(*SCRIPTED, "--scripted-rate", "20", "--scripted-words", "400")
    node_test("test/e2e/scripted.test.mjs", env={"RTSERVER_URL": srv.url}, at_least=9)


def test_the_demo_page_in_chromium(js: Path, chromium: str, start_server) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(*SCRIPTED, "--scripted-rate", "50", "--scripted-words", "400", "--demo")
    node_test(
        "test/browser/demo.test.mjs", env={"RTSERVER_DEMO_URL": srv.url, "RTSERVER_CHROMIUM": chromium}, at_least=5
    )


@pytest.mark.model
def test_on_the_model_from_node_and_in_chromium(js: Path, chromium: str, start_server, bundled_model) -> None:  # type: ignore[no-untyped-def]
    srv = start_server("--demo", "--slots", "4")
    env = {"RTSERVER_MODEL_URL": srv.url, "RTSERVER_CHROMIUM": chromium}
    node_test("test/e2e/model.test.mjs", "test/browser/npc.test.mjs", env=env, at_least=3)


async def test_the_demo_page_is_served_only_with_demo(start_server) -> None:  # type: ignore[no-untyped-def]
    import urllib.error

    plain = start_server(*SCRIPTED)
    with pytest.raises(urllib.error.HTTPError) as refused:
        await http_get(plain.http + "/")
    assert refused.value.code == 426
    refused.value.close()
    demo = start_server(*SCRIPTED, "--demo", data_dir=plain.data_dir.with_name("demo"))
    page = (await http_get(demo.http + "/")).decode()
    assert '<script type="module" src="demo.js">' in page
    assert await http_get(demo.http + "/rtclient.js") == (JS / "dist" / "rtclient.js").read_bytes()
    assert b'from "./rtclient.js"' in await http_get(demo.http + "/demo.js")
    with pytest.raises(urllib.error.HTTPError) as missing:
        await http_get(demo.http + "/nope.js")
    assert missing.value.code == 426  # not a demo file: the WebSocket endpoint's answer, as without --demo
    missing.value.close()
