"""Measuring the served app (never imported by the serving path): the load test."""
