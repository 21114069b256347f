"""Real binaries the tests run (Prometheus, Chromium), from Debian packages."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

import pytest


def debian_binary(package: str, *, names: Sequence[str], skip_env: str,
                  make_target: str) -> str:
    """The path of the first of ``names`` on PATH. When none is there, apt-get installs
    ``package`` if this process is root (as CI is); otherwise the test fails naming the
    package, or is skipped when the environment variable ``skip_env`` is ``skip``. A
    missing tool is a failure by default, never a silent skip."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get(skip_env) == "skip":
        pytest.skip(f"{package} is not installed and {skip_env}=skip")
    if os.geteuid() != 0:
        pytest.fail(f"{names[0]} is missing; install the Debian package `{package}` "
                    f"(make {make_target} does this when run as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env)
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"apt-get installed {package} but {names[0]} is not on PATH")
