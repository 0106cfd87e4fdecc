"""drs-poller: tracks AWS Elastic Disaster Recovery drills and recoveries to a final status."""

from __future__ import annotations

__version__ = "0.1.0"
