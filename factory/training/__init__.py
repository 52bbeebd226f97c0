"""Heavy compute as scripts: each has a config dataclass, `main(config)` and a thin CLI.

Run by hand (`python -m factory.training.sft --config run.json`) or launched by an
asset through Dagster Pipes, which streams their logs into the Dagster run.
"""
