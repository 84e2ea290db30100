"""Knowledge packs: folders of Markdown files with front matter, cut into chunks.

Each file starts with YAML front matter naming its ``collection`` (for example ``rules``,
``code``, ``narrative``, ``lessons``, ``charters``), ``title`` and ``id``; the body is
cut into chunks at headings and blank lines, each at most :data:`CHUNK_CHARS`
characters, with the title and heading kept for context. A file that cannot be used —
too big, binary, not UTF-8, empty, bad or missing front matter, a duplicate id — is
reported with its path and the reason, and the rest of the pack still loads.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

_WORD = re.compile(r"[^\W_]{3,}")
STOPWORDS = frozenset(
    """
    the and for are but not you your with this that these those from have has had was
    were will would can could should may might must into onto over under about what
    which who whom whose when where why how all any each every some such than then there
    their them they its our out off too very just also only own same other more most
    much many few does did doing done been being here his her him she yes let like want
    need make made know now again still get got use using way ways there's i'm it's
    """.split()
)
MAX_FILE_BYTES = 512 * 1024
CHUNK_CHARS = 1200
COLLECTION_PATTERN = r"^[a-z][a-z0-9_]{1,40}$"


class FrontMatter(BaseModel):
    model_config = ConfigDict(extra="allow")

    collection: Annotated[str, StringConstraints(pattern=COLLECTION_PATTERN)]
    title: str = Field(min_length=1, max_length=200)
    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]


@dataclass(frozen=True)
class Chunk:
    id: str  # document id + chunk number: stable, so re-indexing replaces
    document: str
    collection: str
    title: str
    heading: str
    text: str
    digest: str  # sha256 of the text, to skip unchanged chunks


@dataclass(frozen=True)
class PackError:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


_FRONT = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n?(.*)\Z", re.DOTALL)


def read_document(path: Path) -> tuple[FrontMatter, str]:
    """The front matter and body of one Markdown file; ValueError says what is wrong."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{size} bytes; a knowledge file is at most {MAX_FILE_BYTES} bytes")
    raw = path.read_bytes()
    if b"\0" in raw:
        raise ValueError("binary file (NUL bytes), not Markdown")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    match = _FRONT.match(text.replace("\r\n", "\n"))
    if match is None:
        raise ValueError("no front matter: start with --- / collection, title, id / ---")
    try:
        meta = yaml.safe_load(match[1])
    except yaml.YAMLError as exc:
        raise ValueError(f"front matter is not valid YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError("front matter must be a mapping with collection, title and id")
    try:
        front = FrontMatter.model_validate(meta)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in error["loc"])
        raise ValueError(f"front matter {field}: {error['msg']}") from None
    body = match[2].strip()
    if not body:
        raise ValueError("no text after the front matter")
    return front, body


def chunk_document(front: FrontMatter, body: str) -> list[Chunk]:
    """Cut a body at headings, then at blank lines, into chunks of bounded size."""
    chunks: list[Chunk] = []
    heading = front.title
    buffer: list[str] = []

    def flush() -> None:
        text = "\n\n".join(buffer).strip()
        buffer.clear()
        while text:
            piece, text = text[:CHUNK_CHARS], text[CHUNK_CHARS:]
            number = len(chunks)
            chunks.append(
                Chunk(
                    id=f"{front.id}#{number}",
                    document=front.id,
                    collection=front.collection,
                    title=front.title,
                    heading=heading,
                    text=piece,
                    digest=hashlib.sha256(piece.encode()).hexdigest(),
                )
            )

    for block in re.split(r"\n\s*\n", body):
        block = block.strip()
        if not block:
            continue
        first = block.splitlines()[0]
        if first.startswith("#"):
            flush()
            heading = first.lstrip("#").strip() or heading
        if sum(len(b) for b in buffer) + len(block) > CHUNK_CHARS:
            flush()
        buffer.append(block)
    flush()
    return chunks


def load_pack(folder: Path) -> tuple[list[Chunk], list[PackError]]:
    """Every chunk of the pack's usable files, and an error for each file refused."""
    chunks: list[Chunk] = []
    errors: list[PackError] = []
    seen: dict[str, Path] = {}
    if not folder.is_dir():
        return [], [PackError(folder, "not a folder")]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.is_symlink():
            errors.append(PackError(path, "symbolic links are not followed"))
            continue
        if path.suffix.lower() not in (".md", ".markdown"):
            errors.append(PackError(path, "not a Markdown file (.md)"))
            continue
        try:
            front, body = read_document(path)
        except (OSError, ValueError) as exc:
            errors.append(PackError(path, str(exc)))
            continue
        if front.id in seen:
            errors.append(PackError(path, f"id {front.id} is also used by {seen[front.id]}"))
            continue
        seen[front.id] = path
        chunks.extend(chunk_document(front, body))
    return chunks, errors


def stem(word: str) -> str:
    """A light English stem of a lowercased word, so that the forms of a word meet
    ("requiring" and "require", "muted" and "mute", "backups" and "backup")."""
    word = word.removesuffix("'s")
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and word.endswith(("ses", "xes", "ches", "shes")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    for suffix in ("ing", "ed", "ly"):
        if len(word) - len(suffix) >= 3 and word.endswith(suffix):
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]  # "gapped": "gap"
            break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def content_words(text: str) -> set[str]:
    """The words of ``text`` that carry its meaning: at least three letters or digits,
    lowercased and stemmed (:func:`stem`), common English words left out."""
    return {stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS}


_TOKEN = re.compile(r"[^\W_][\w'-]*")
_NAME = re.compile(r"[A-Z0-9]{2,}s?|[A-Za-z]*[a-z][A-Z]\w*")  # LDAP, GPUs, MinIO


def names(text: str) -> set[str]:
    """The names ``text`` uses, as :func:`content_words`: acronyms, words with a capital
    inside, and capitalised words that do not open their sentence (Slack, Kubernetes)."""
    found: set[str] = set()
    for sentence in re.split(r"(?<=[.?!:])\s+|\n", text):
        for i, token in enumerate(_TOKEN.findall(sentence)):
            if "-" not in token and (_NAME.fullmatch(token) or (i > 0 and token[0].isupper())):
                found |= content_words(token)
    return found
