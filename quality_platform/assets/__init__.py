"""Software-defined assets, by layer: raw, standard, kpi."""
