"""The provenance field lists have one owner (records.py) that cannot drift from the model."""

from __future__ import annotations

from calibmon.dashboards import build
from calibmon.records import POINT_PROVENANCE_FIELDS, PROVENANCE_FIELDS, Provenance
from calibmon.store import dataframes


def test_provenance_fields_are_the_models_declared_keys() -> None:
    assert set(PROVENANCE_FIELDS) == set(Provenance.model_fields)
    assert len(PROVENANCE_FIELDS) == len(set(PROVENANCE_FIELDS))


def test_point_fields_are_run_day_obs_and_provenance() -> None:
    assert set(POINT_PROVENANCE_FIELDS) - {"day_obs"} <= set(PROVENANCE_FIELDS)


def test_users_take_the_one_list() -> None:
    assert dataframes.PROVENANCE_COLUMNS is PROVENANCE_FIELDS
    assert build.POINT_PROVENANCE_FIELDS is POINT_PROVENANCE_FIELDS
