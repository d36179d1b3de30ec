"""Board-aware search: accuracy predictor, multi-constraint evolutionary search, verified selection, catalog.

    pred = get_predictor("runs/d/supernet")                      # trains and caches on first use
    res = search(space, load_board("nucleo-f412zg"), predictor=pred, latency_ms=50)
    sel = select_and_verify("runs/d/supernet", board, "runs/d/boards/nucleo-f412zg")   # exported, fits
    cat = catalog("runs/d/supernet", list_boards(), "runs/d/catalog")
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "search": "evolution", "SearchResult": "evolution", "Candidate": "evolution", "Budget": "evolution",
    "resolve_budget": "evolution", "smallest_costs": "evolution",
    "AccuracyPredictor": "predictor", "train_predictor": "predictor", "get_predictor": "predictor",
    "load_predictor": "predictor", "collect_samples": "predictor", "kendall_tau": "predictor",
    "encode": "encoding",
    "select_and_verify": "verify", "Selection": "verify",
    "catalog": "catalog", "catalog_data": "catalog", "write_catalog": "catalog", "catalog_markdown": "catalog",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
