"""Evaluations of trained models: probes of their features, metrics of their outputs."""
