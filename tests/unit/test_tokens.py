"""User tokens: the verifier, and the Python and JS snippets of docs/deploy.md mint tokens it accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from rtserver.auth.tokens import TokenError, mint, verify

from ..conftest import ROOT, require

DOC = (ROOT / "docs" / "deploy.md").read_text()


def snippet(lang: str) -> str:
    found = re.search(rf"```{lang}\n(.*?)```", DOC, re.S)
    assert found, lang
    return found.group(1)


def test_claims_come_through_and_bad_tokens_are_refused():
    now = time.time()
    p = verify("s", mint("s", "ann", 60, now=now, models=["m"], ro=["sid1"], limits={"tokens_per_min": 10}), now=now)
    assert (p.user, p.models, p.ro, p.limit("tokens_per_min", 0)) == ("ann", frozenset({"m"}), frozenset({"sid1"}), 10)
    token = mint("s", "ann", 60, now=now)
    head, body, sig = token.split(".")
    for bad in (
        mint("s", "ann", -1, now=now),  # expired
        mint("other", "ann", 60, now=now),  # wrong secret
        "e30." + body + "." + sig,  # header swapped ({}): no HS256
        head + "." + body + ".",  # no signature
        "garbage",
    ):
        with pytest.raises(TokenError):
            verify("s", bad, now=now)


def test_the_python_snippet_mints_a_token_the_server_accepts():
    scope: dict = {}
    exec(snippet("python"), scope)  # noqa: S102 - the documentation's own code
    assert verify("s3cret", scope["mint"]("s3cret", "ann", ro=["x"]), now=time.time()).ro == {"x"}


def test_the_js_snippet_mints_a_token_the_server_accepts(tmp_path):
    require(shutil.which("node") is not None, "node is not installed (the JS snippet runs in Node 20)")
    (tmp_path / "mint.mjs").write_text(snippet("js") + '\nconsole.log(mint("s3cret", "bob"));\n')
    out = subprocess.run(["node", str(tmp_path / "mint.mjs")], capture_output=True, text=True, check=True, timeout=60)
    assert verify("s3cret", out.stdout.strip(), now=time.time()).user == "bob"
