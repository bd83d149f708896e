"""Learners that see only what the environments show them."""
