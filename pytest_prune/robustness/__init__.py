"""Robustness beyond test accuracy: corruptions, functional similarity, excess error, prune potential."""
