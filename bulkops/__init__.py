"""bulkops: bulk changes to a product catalog over GraphQL."""

from __future__ import annotations

__version__ = "0.1.0"
