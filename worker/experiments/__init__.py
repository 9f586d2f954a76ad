"""Experiments: arms, assignment, outcomes and their report."""
