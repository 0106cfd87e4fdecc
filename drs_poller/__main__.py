"""``python -m drs_poller`` is ``drs-poller``."""

from __future__ import annotations

import sys

from drs_poller.cli import main

sys.exit(main())
