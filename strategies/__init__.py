"""Native routing strategies (populated by the LLM-path issue)."""
