"""Governance: access and action policy, governed queries, privacy operations, and the incident
store with the freeze guard every model change checks (F10, F11, F23, F24). The incident
workflow is quality_platform.incidents, the reports are quality_platform.reports."""
