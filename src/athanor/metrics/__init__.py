"""Metrics: the METRICS registry; exact sums accumulated per batch, summed across ranks, divided
once."""

from athanor.metrics.base import METRICS, Metric, MetricSet, build_metrics

__all__ = ["METRICS", "Metric", "MetricSet", "build_metrics"]
