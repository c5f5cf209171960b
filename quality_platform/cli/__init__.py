"""``qp``: the command line for what the Dagster UI does not do. Every command speaks ``--json``.

One module per command group: :mod:`.commands` (platform, pipeline and model lifecycle),
:mod:`.query`, :mod:`.privacy`, :mod:`.audit`, :mod:`.incidents`; what they share is in
:mod:`._common`. ``python -m quality_platform.cli`` runs it like the ``qp`` script."""

from quality_platform.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
