"""quality_platform."""
