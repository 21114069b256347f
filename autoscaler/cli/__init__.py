"""The ``autoscaler`` command line: ``main`` is the console script's entry point."""

from autoscaler.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
