"""Measuring models: metrics and threshold rules, the shipped reports, the protocol comparison."""
