"""The benchmark package lives at the repository root, beside drs_poller; make it
importable however pytest is started (``python -m pytest`` already has the root)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
