"""Operator policy: what each plugin may do, pinned to the exact module it applies to."""
