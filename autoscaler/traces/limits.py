"""Size limits that keep a bad trace file or option from exhausting memory.

Each limit is checked *before* the big allocation, and a breach is a one-line
``TraceError``/``SpecError`` (exit 2 in the CLI), never a numpy ``MemoryError``.
"""

from __future__ import annotations

MAX_SPAN_S = 400 * 86_400.0
"""Longest trace span accepted, seconds (400 days). Replays step through 1-s ticks, so a
span is memory: 400 days are 34,560,000 ticks, about 280 MB per float64 array. The longest
real trace here (NASA) spans 58.6 days. A file whose timestamps span 10^15 s would ask for
8 PB and is refused instead; cut a long trace with ``start``/``duration``."""
MAX_REQUESTS = 200_000_000
"""Most requests a request-level trace may hold after scaling (about 4.8 GB for its three
8-byte columns). Larger loads belong to the fluid engine, which works on rates."""
MAX_SUPERPOSED_COPIES = 1_000
"""Most independent copies ``scale_trace`` superposes for a short trace (random-shift
copies). Each copy costs one pass over the trace; 1,000 passes over a 1-hour count trace
take well under a second."""
