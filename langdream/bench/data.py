"""The labelled data the benchmarks measure against (../shared/data, see its README)."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from langdream.errors import LangDreamError

DATA_ENV = "LANGDREAM_SHARED_DATA"


def find_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The shared data directory: the argument, ``$LANGDREAM_SHARED_DATA``, or ``../shared/data``
    next to the working directory or to this checkout. ``None`` when none exists."""
    if explicit:
        if not Path(explicit).is_dir():
            raise LangDreamError(
                f"benchmark data directory {explicit} does not exist",
                hint=f"pass --data with the folder holding clinc150/ and banking77/, or set ${DATA_ENV}",
            )
        return Path(explicit)
    candidates = [os.environ.get(DATA_ENV), Path.cwd().parent / "shared" / "data"]
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)


@dataclass(frozen=True)
class LabelledTexts:
    name: str
    texts: list[str]
    labels: list[str]

    @property
    def n_labels(self) -> int:
        return len(set(self.labels))


def clinc150(data_dir: Path, split: str = "test") -> LabelledTexts:
    """CLINC150 in-scope utterances of ``split`` ("train", "val", "test")."""
    rows = json.loads((data_dir / "clinc150" / "data_full.json").read_text())[split]
    return LabelledTexts("clinc150", [t for t, _ in rows], [label for _, label in rows])


def banking77(data_dir: Path, split: str = "test") -> LabelledTexts:
    """Banking77 queries of ``split`` ("train" or "test")."""
    with (data_dir / "banking77" / f"{split}.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return LabelledTexts("banking77", [r["text"] for r in rows], [r["category"] for r in rows])
