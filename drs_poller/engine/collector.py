"""The cycle collector, set for a daemon that holds a large heap for hours.

The daemon holds every tracked execution's item and replaces each one as it is
written. With CPython's default thresholds (700, 10, 10) the collector scanned that
whole heap every 6.7 s in the W10k steady state, 344 ms each time: 20 % of the
daemon's CPU, and a pause of the event loop as long (benchmarks/FINDINGS.md, "Issue 20,
fourth pass"). Almost none of it is cyclic garbage: the items are plain dicts and
lists, freed by their reference counts when a write replaces them. The garbage cycles
the daemon and its libraries do make die young, and the young collections still find
them (181,000 objects in five minutes at W10k).

:func:`tune` sets:

- the young generation's threshold to 10,000 net new containers (700 by default), so
  that more of a batch's objects die before a collection sees them, rather than being
  promoted to the old generations;
- a full collection after 100 collections of the middle generation (10 by default):
  about every 13 minutes at W10k instead of every 6 to 7 seconds. CPython's own rule
  still applies on top: a full collection runs only when a quarter of the old
  generation is new since the last one. The one full collection of a 15-minute W10k run
  found 3 unreachable objects;
- the objects made before the daemon runs (modules, classes, settings) to the
  permanent generation (``gc.freeze``): they live as long as the process,
  and no full collection has to scan them again.

Python 3.14's incremental collector gives the thresholds other meanings and bounds its
pauses itself; there only the freeze applies.
"""

from __future__ import annotations

import gc
import sys

# (young, middle, old): see the module's docstring.
THRESHOLDS = (10_000, 10, 100)
# The first version whose collector is incremental (two generations).
INCREMENTAL_FROM = (3, 14)


def tune(*, version: tuple[int, int] | None = None) -> tuple[int, ...]:
    """Collect once, freeze what is alive, and set :data:`THRESHOLDS` where the
    collector has three generations. Returns the thresholds in force after it."""
    gc.collect()
    gc.freeze()
    if (version or sys.version_info[:2]) < INCREMENTAL_FROM:
        gc.set_threshold(*THRESHOLDS)
    return gc.get_threshold()
