"""Typed, frozen settings for every group-wide key, and their validation."""
