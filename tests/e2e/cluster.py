"""Helpers for tests that run several app instances on one PostgreSQL database."""

from __future__ import annotations

from typing import Any

from bot.config import Config


def on_pg(config: Config, pg_url: str) -> Config:
    """``config`` with its storage on ``pg_url`` (clustering on: several instances may share it)."""
    return config.model_copy(update={"storage": config.storage.model_copy(update={"url": pg_url})})


def tasks_of(obj: Any) -> list:
    return list(getattr(obj, "_tasks", []))
