"""The plugin author's toolkit: scaffold, build, inspect and test a plugin without a gateway."""
