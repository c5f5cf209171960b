"""The feature layer (F12 groundwork): per-unit features from the readings in the unit's window.

``config`` reads data/features.yaml, ``schema`` declares the feature table once (pandera, DDL,
Dagster column schema, feature definitions), ``compute`` builds the features in DuckDB SQL.
"""
