"""Governance: access and action policy, governed queries, privacy operations, audit tooling,
incidents, operating reviews and model documentation (F10, F11, F23-F25, F29)."""
