"""Metrics: the METRICS registry (metrics/base.py, with what a metric is) and athanor's metrics
registered in it; exact sums accumulated per batch, summed across ranks, divided once."""

from athanor.metrics import classification, multilabel, regression  # noqa: F401  (registers them)
from athanor.metrics.base import METRICS, Metric, MetricSet, build_metrics

__all__ = ["METRICS", "Metric", "MetricSet", "build_metrics"]
