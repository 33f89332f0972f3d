"""``jobledger provenance``: what produced a result, and how two jobs differ."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

import jobledger
from jobledger import audit
from jobledger.cli import cli

pytestmark = pytest.mark.usefixtures("jobledger_home")


def test_explain_and_diff(service: Any) -> None:
    with jobledger.connect(url=service.url, token=service.token) as conn:
        a = conn.submit({"x": 1}, "echo", params={"delay": 0.01}, alias="prov_a")
        b = conn.submit({"x": 2}, "echo", params={"delay": 0.02}, alias="prov_b")
        a.result(timeout=60)
        b.result(timeout=60)
    lineage = audit.explain("prov_a")
    assert lineage["job"] == str(a.job_id)
    assert lineage["backend"]["name"] == "echo" and lineage["backend"]["version"]
    assert lineage["params"] == {"delay": 0.01}
    assert lineage["inputs"]["batch"]["sha256"] == a.provenance["batch_sha256"]
    assert lineage["inputs"]["batch"]["stored"] is True
    assert lineage["environment"]["python"]["version"]
    assert "git" in lineage["code"]
    fields = {d.field: (d.a, d.b) for d in audit.compare("prov_a", "prov_b")}
    assert fields["params.delay"] == (0.01, 0.02)
    assert "inputs.batch.sha256" in fields and "result.sha256" in fields
    assert not any(f.startswith("environment") for f in fields)  # same process
    assert audit.compare("prov_a", "prov_a") == []

    runner = CliRunner()
    shown = runner.invoke(cli, ["provenance", "prov_a"])
    assert shown.exit_code == 0, shown.output
    assert "backend:" in shown.output and str(a.job_id) in shown.output
    diff = runner.invoke(cli, ["provenance", "prov_a", "--diff", "prov_b", "--json"])
    body = json.loads(diff.output)
    assert {"field": "params.delay", "a": 0.01, "b": 0.02} in body["differences"]
    missing = runner.invoke(cli, ["provenance", "prov_c"])
    assert missing.exit_code == 1 and "prov_c" in missing.output
