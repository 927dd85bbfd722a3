"""Shipped reference weights and their manifest (installed as ``pytest_prune.reference_models``)."""
