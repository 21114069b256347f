"""``python -m autoscaler.cli``."""

import sys

from autoscaler.cli.app import main

sys.exit(main())
