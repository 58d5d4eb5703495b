"""Channel connectors: one module per channel, registered explicitly here."""

from .base import Connector

__all__ = ["Connector"]
