"""The vector index: a derived, rebuildable copy of embeddings for fast similarity search."""

from langdream.index.chroma import ChromaIndex, IndexHit, open_index
from langdream.index.server import ChromaServerIndex

__all__ = ["ChromaIndex", "ChromaServerIndex", "IndexHit", "open_index"]
