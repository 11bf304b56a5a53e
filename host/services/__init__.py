"""Backends behind the gated host calls: shared store, callouts, metrics, audit."""
