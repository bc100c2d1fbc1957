"""Workflows: jobs that combine parts (merge, train, evaluate, store) into one study."""
