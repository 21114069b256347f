"""Shared test set-up: this directory on sys.path, so tests in sub-folders (tests/e2e) can
use the real-server helpers in tests/promserver.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
