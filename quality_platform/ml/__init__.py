"""The ML lifecycle: training data, CatBoost model, release gate, scoring, canary."""
