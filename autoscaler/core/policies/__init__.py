"""Decision policies. Each module exposes ``decide(snapshot, state, spec, now)``."""
