"""Filters: every connection and turn concern is a small object of one shape, built once from settings.

``build_pipeline`` (``chain.py``) is the one place that decides which filters run and in what order.
"""

from .base import AdmitFilter, ConnectionFilter, Filter, Handler, TurnContext
from .chain import Pipeline, build_pipeline

__all__ = ["AdmitFilter", "ConnectionFilter", "Filter", "Handler", "Pipeline", "TurnContext", "build_pipeline"]
