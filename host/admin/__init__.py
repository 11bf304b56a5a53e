"""The operator's admin API under /admin: plugins, live config, hot swap, quarantine."""
