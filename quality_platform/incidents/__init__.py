"""The incident workflow (F24): open and close, the evidence bundle, the incident report."""
