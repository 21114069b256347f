"""The test suite. A package so that ``tests.support`` (and ``tests.e2e``'s harness modules) are
imported by one name everywhere: pytest puts the repo root on ``sys.path`` for it."""
