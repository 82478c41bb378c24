"""The vector index: a derived, rebuildable copy of embeddings for fast similarity search."""

from langdream.index.chroma import ChromaIndex, IndexHit

__all__ = ["ChromaIndex", "IndexHit"]
