"""Measuring the conversational product (never imported by the serving path): user simulators,
the compared systems, scripted evaluations, ranker fitting on simulated conversations, and the
latency and understanding benchmarks."""
