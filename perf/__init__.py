"""Benchmarks and the tick-to-trade harness; each writes DIR/<benchmark>.json."""
