"""docs/reference.md documents every setting and every metric family the service defines;
the README keeps its two-command Quickstart."""

from __future__ import annotations

from pathlib import Path

import pytest

from drs_poller.observability.metrics import Metrics
from drs_poller.settings import Settings

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
REFERENCE = (ROOT / "docs" / "reference.md").read_text()


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field):
    assert f"`DRS_POLLER_{field.upper()}`" in REFERENCE
    assert Settings.model_fields[field].description


def _families() -> list[str]:
    return sorted(
        family.name + ("_total" if family.type == "counter" else "")
        for family in Metrics().registry.collect()
        if family.name.startswith("drs_poller_")
    )


@pytest.mark.parametrize("family", _families())
def test_every_metric_family_is_documented(family):
    assert f"`{family}`" in REFERENCE


def test_quickstart_has_exactly_two_commands():
    block = README.split("## Quickstart", 1)[1].split("```", 2)[1]
    commands = [line for line in block.splitlines()[1:] if line.strip()]
    assert commands == ["./dev demo", "./dev test"]
