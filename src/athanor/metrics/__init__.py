"""Metrics: exact counts accumulated per batch, summed across ranks, divided once."""
