"""Measuring retrieval (never imported by the serving path): ANN benchmarks, and the run
metadata and report writer that every report in this project uses."""
