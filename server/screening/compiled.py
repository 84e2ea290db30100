"""The English abuse classifier of ``alt-profanity-check``, compiled to plain weights.

The wheel ships a scikit-learn model: a TF-IDF of single words (English stop words out,
L2-normed) and five linear SVMs, each with a sigmoid calibration, whose probabilities
are averaged. Loaded as it is, it costs the hub about 120 MB (scikit-learn, SciPy) and
3 ms a message, most of it scikit-learn's checks. :func:`compile_model` reads it once,
in a process of its own (``python -m botarena.server.screening.compiled OUT``), and
writes for each word of its vocabulary its IDF and its five weights as JSON;
:class:`AbuseModel` scores a text from that file with the same arithmetic in plain
Python (the test compares the two), in a few microseconds per word. The file is kept
in the var folder under the wheel's version, so it is made again only when the wheel
changes.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

PACKAGE = "alt-profanity-check"
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # the vectorizer's token_pattern


def compile_model(out: Path) -> None:
    """Write the wheel's model as weights to ``out`` (imports scikit-learn: run it in a
    process of its own, see :func:`compiled_path`)."""
    from profanity_check import profanity_check as pc

    vectorizer, model = pc.vectorizer, pc.model
    folds = model.calibrated_classifiers_
    idf = vectorizer.idf_
    coefs = [fold.estimator.coef_[0] for fold in folds]
    words = {
        word: [float(idf[i]), *(float(c[i]) for c in coefs)]
        for word, i in vectorizer.vocabulary_.items()
    }
    doc = {
        "package": PACKAGE,
        "version": version(PACKAGE),
        "intercepts": [float(f.estimator.intercept_[0]) for f in folds],
        "calibration": [[float(f.calibrators[0].a_), float(f.calibrators[0].b_)] for f in folds],
        "words": words,
    }
    part = out.with_name(f"{out.name}.{os.getpid()}.partial")  # hubs may compile at once
    part.write_text(json.dumps(doc))
    part.replace(out)


def compiled_path(cache_dir: Path) -> Path:
    """The compiled model in ``cache_dir``, made first (in a child process) if missing."""
    out = cache_dir / f"abuse-{PACKAGE}-{version(PACKAGE)}.json"
    if not out.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "botarena.server.screening.compiled", str(out)],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return out


class AbuseModel:
    """Scores how abusive (profanity, insults) an English text is, 0 to 1."""

    def __init__(self, path: Path) -> None:
        doc: dict[str, Any] = json.loads(path.read_text())
        self._words: dict[str, list[float]] = doc["words"]
        self._intercepts: list[float] = doc["intercepts"]
        self._calibration: list[list[float]] = doc["calibration"]

    def score(self, text: str) -> float:
        counts: dict[str, int] = {}
        for token in _TOKEN.findall(text.lower()):
            if token in self._words:
                counts[token] = counts.get(token, 0) + 1
        folds = len(self._intercepts)
        sums = [0.0] * folds
        norm = 0.0
        for token, count in counts.items():
            weights = self._words[token]
            value = count * weights[0]
            norm += value * value
            for k in range(folds):
                sums[k] += value * weights[k + 1]
        scale = 1 / math.sqrt(norm) if norm else 0.0
        probability = 0.0
        for k, (a, b) in enumerate(self._calibration):
            decision = sums[k] * scale + self._intercepts[k]
            probability += 1 / (1 + math.exp(a * decision + b))
        return probability / folds


if __name__ == "__main__":
    compile_model(Path(sys.argv[1]))
