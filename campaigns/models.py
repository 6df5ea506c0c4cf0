"""Campaigns."""

from __future__ import annotations
