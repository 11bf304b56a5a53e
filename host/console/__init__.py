"""The operator console at /ui: server-rendered pages over the admin API (docs/console.md)."""
