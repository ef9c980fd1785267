"""Benchmarks that run tabrl and the seed's plain loop side by side and print ratios."""
