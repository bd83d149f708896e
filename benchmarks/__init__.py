"""Protocols, metrics, benchmarks and the command line of savings-gym."""
