"""Benchmarks of the chat relay (see docs/performance.md)."""
