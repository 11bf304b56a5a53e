"""Native Python plugins: the trusted tier, running in the gateway process itself."""
