"""Benchmark of the content filter: time to judge one message of 500 characters.

Every message of the labelled corpora (``tests/data/screening_*.tsv``) is brought to
500 characters (clean chat around it, the judged part at its start, middle or end) and
judged one at a time, as the hub judges a send; the time of each call is kept. Results:
p50 / p95 / max per message, and the same for the English model alone and the rules
alone, so that a slow rule shows. The aim is under 1 ms at p95.

Usage: python -m tests.bench.screening_bench [--rounds 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path
from typing import Any

from botarena.server.screening import Screen, by_rules
from botarena.server.screening.rules import fold
from tests.bench.common import percentile, write_report

CORPORA = sorted((Path(__file__).parents[1] / "data").glob("screening_*.tsv"))
FILLER = (
    "The parser keeps the plan in one place, and the tests say what each rule must do. "
    "Le compilateur garde le plan au même endroit, et les tests disent ce que fait chaque règle. "
)
LENGTH = 500


def messages() -> list[str]:
    texts = []
    for path in CORPORA:
        with path.open(encoding="utf-8", newline="") as f:
            texts += [row["text"] for row in csv.DictReader(f, delimiter="\t")]
    out = []
    for i, text in enumerate(texts):
        room = max(0, LENGTH - len(text) - 1)
        pad = (FILLER * (LENGTH // len(FILLER) + 2))[:room]
        cut = (0, room // 2, room)[i % 3]
        out.append((pad[:cut] + " " + text + " " + pad[cut:])[:LENGTH])
    return out


def timed(call: Any, texts: list[str], rounds: int) -> dict[str, float]:
    times = []
    for _ in range(rounds):
        for text in texts:
            started = time.perf_counter()
            call(text)
            times.append((time.perf_counter() - started) * 1000)
    return {
        "calls": len(times),
        "p50_ms": round(percentile(times, 50), 4),
        "p95_ms": round(percentile(times, 95), 4),
        "max_ms": round(max(times), 4),
    }


def rules_only(text: str) -> None:
    by_rules(fold(text))


def main(rounds: int) -> dict[str, Any]:
    screen = Screen(Path(tempfile.mkdtemp(prefix="ba-screening-bench-")))
    texts = messages()
    return {
        "benchmark": "screening",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "message_chars": LENGTH,
        "messages": len(texts),
        "aim": "under 1 ms at p95 per message",
        "judge": timed(screen.judge, texts, rounds),
        "abuse_model_alone": timed(screen.model.score, texts, rounds),
        "rules_alone": timed(rules_only, texts, rounds),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("tests/bench/results/screening.json"))
    args = parser.parse_args()
    write_report(main(args.rounds), args.out)
