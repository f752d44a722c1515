"""Dashboards from any part of the metric catalogue (issue 12, item 5): a catalogue that
lacks metrics (no PTC, no gain, nothing at all) still gives every dashboard with valid
queries, and a dashboard whose builder fails becomes a placeholder naming the reason while
the others are built."""

from __future__ import annotations

import json
import logging
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from calibmon.catalogue import Catalogue, load_catalogue
from calibmon.dashboards import build

FULL = load_catalogue()
SELECT_RE = re.compile(r"^SELECT\s+(.*?)\s+FROM\s+\"", re.S)


def _queries(dash: dict) -> list[str]:
    return [
        t["query"] for p in build.iter_panels(dash) for t in p.get("targets", []) if "query" in t
    ]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(names=st.lists(st.sampled_from(sorted(FULL.metrics)), unique=True))
def test_any_subset_of_the_catalogue_builds(names: list[str]) -> None:
    cat = Catalogue({n: FULL[n] for n in names})
    dashboards = build.build_all(cat)
    assert sorted(dashboards) == sorted(build.BUILDERS)
    for name, dash in dashboards.items():
        assert not dash["title"].endswith("(not built)"), (name, dash["description"])
        assert json.loads(build.dumps(dash)) == dash
        ids = [p["id"] for p in build.iter_panels(dash)]
        assert len(ids) == len(set(ids)), name
        for q in _queries(dash):
            m = SELECT_RE.match(q)
            assert m and m.group(1).strip(), (name, q)  # a field list, never `SELECT  FROM`
            assert "$timeFilter" in q
        fields = " ".join(_queries(dash))
        for metric in set(FULL.metrics) - set(names):  # no panel reads a missing metric
            assert f'"{metric}"' not in fields, (name, metric)


def test_a_failing_dashboard_is_a_placeholder(monkeypatch, caplog) -> None:
    def broken(cat, ns=build.NAMESPACE):
        raise KeyError("ptc_gain")

    monkeypatch.setitem(build.BUILDERS, "calibmon-ptc.json", broken)
    with caplog.at_level(logging.WARNING, logger="calibmon.dashboards.build"):
        dashboards = build.build_all()
    ph = dashboards["calibmon-ptc.json"]
    assert ph["uid"] == build.UIDS["ptc"] and ph["title"].endswith("(not built)")
    (panel,) = list(build.iter_panels(ph))
    assert panel["type"] == "text" and "KeyError: 'ptc_gain'" in panel["options"]["content"]
    assert any("calibmon-ptc.json not built" in r.getMessage() for r in caplog.records)
    whole = build.build_all()
    for name in set(build.BUILDERS) - {"calibmon-ptc.json"}:
        assert dashboards[name] == whole[name]
