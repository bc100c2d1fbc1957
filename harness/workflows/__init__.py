"""Workflows: the multi-part jobs a command runs (evaluate models on a suite, save a baseline and gate a release,
finish an evolve search, run a study). The CLI calls workflows or parts; parts never call workflows.
See docs/development.md for the floors and what may import what."""
