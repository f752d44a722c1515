"""Fixtures for the dashboard tests."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # servers.py
sys.path.insert(0, str(TESTS / "report"))  # nightdata.py
