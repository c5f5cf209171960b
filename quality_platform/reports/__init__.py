"""Reports: read-only views over the platform's records."""
