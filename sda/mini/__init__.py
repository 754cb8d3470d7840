"""The embedded mini benchmark: digits data and the small source models' settings."""
