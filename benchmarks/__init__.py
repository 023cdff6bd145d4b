"""Benchmark scripts (a package only so that type checkers name redis.py ``benchmarks.redis``)."""
