"""effitrain's shared harness: cards, techniques, recipes, measurement, runner, tracking, report, CLI."""

__version__ = "0.1.0"
