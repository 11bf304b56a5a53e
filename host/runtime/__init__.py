"""Wasm runtime: one engine per process, compiled-module cache, sandboxed VMs."""
