"""Fuzzing the bundle reader and installer with hypothesis: a signed 2.0.0 bundle whose
bytes are overwritten (mostly in the first 4 KiB and in each member's header and data,
the headers' checksums made right again or not), cut short or lengthened, and whose tar
headers are rewritten in pax and in GNU format (names with ``..``, ``/``, any unicode or
tens of thousands of characters, every member type, sizes that lie either way, pax
records up to 200 KiB, members dropped, doubled or reordered), sometimes with 80 MiB of
zeros behind, is verified and then installed on its own copy of a site that has 1.0.0.
Every outcome is either an install of exactly the signed payload or a ``BundleError``
with a code, never another exception; ``verify`` writes nothing and refuses, with the
same code, exactly what ``install`` refuses; a refused install leaves ``var/`` byte for
byte as it was; and the peak of Python memory stays under 64 MiB for a bundle of a few
kilobytes.
"""

from __future__ import annotations

import copy
import io
import os
import re
import shutil
import tarfile
import tempfile
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, event, example, given, reject, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from botarena.bundles.archive import MAX_HEADER, MAX_MANIFEST, MAX_SIGNATURE, BundleFile
from botarena.bundles.install import Policy, install, verify
from botarena.bundles.site import Site
from botarena.bundles.trust import TrustStore
from botarena.server.errors import BundleError
from tests.bundle_site import MODEL, Site_

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "botarena-hypothesis")  # its caches
EXAMPLES = 600  # per test: about 15 s each on 2 cores
FUZZ = settings(
    max_examples=EXAMPLES,
    database=None,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PAYLOAD = {
    "personas/ada.yaml": b"id: ada\n",
    "knowledge/demo/rules.md": b"rules of v2.0.0\n",
    "models/tiny.gguf": MODEL + b"2.0.0",
}
MAX_PEAK = 64 << 20
TAIL = 80 << 20  # zeros behind the archive: a hole in the file, nothing written

Verify = Callable[[BundleFile, TrustStore, Policy, Site], Any]
Install = Callable[[Site, BundleFile, TrustStore, Policy], dict[str, Any]]


def refusal(run: Callable[[], Any]) -> Any:
    """What ``run`` returns, or the BundleError it raised, which must carry a code and
    a message; any other exception goes through and fails the example."""
    try:
        return run()
    except BundleError as exc:
        assert isinstance(exc.code, str) and exc.code, f"a refusal without a code: {exc!r}"
        assert isinstance(exc.message, str) and exc.message, f"a refusal unexplained: {exc!r}"
        return exc


@dataclass
class Fuzz:
    """A site with 1.0.0 installed, never changed again (each example installs on a copy
    of its ``var/``), the signed 2.0.0 bundle, and the outcomes seen."""

    site: Site_
    bundle: Path
    seen: Counter[str] = field(default_factory=Counter)

    @classmethod
    def prepare(cls, site: Site_) -> Fuzz:
        site.install(site.bundle("1.0.0"))
        return cls(site, site.bundle("2.0.0", PAYLOAD))

    def check(
        self, data: bytes, tail: int = 0, verify_: Verify = verify, install_: Install = install
    ) -> str:
        """Verify, then install, the bundle ``data`` (with ``tail`` zeros behind it) on a
        copy of the site; the refusal's code, or "installed"."""
        folder = Path(tempfile.mkdtemp(prefix="example-", dir=self.site.root))
        try:
            outcome = self._check(folder, data, tail, verify_, install_)
        finally:
            shutil.rmtree(folder)
        self.seen[outcome] += 1
        return outcome

    def _check(
        self, folder: Path, data: bytes, tail: int, verify_: Verify, install_: Install
    ) -> str:
        var = folder / "var"
        shutil.copytree(self.site.var, var, symlinks=True)
        here = replace(self.site, var=var, site=Site(var))
        path = folder / "bundle.tar"
        path.write_bytes(data)
        if tail:
            os.truncate(path, len(data) + tail)
        before = here.state()

        def verified() -> Any:
            with BundleFile(path) as opened:
                return verify_(opened, self.site.trust, Policy(), here.site)

        def installed() -> Any:
            with BundleFile(path) as opened:
                return install_(here.site, opened, self.site.trust, Policy())

        first, peak = traced(verified)
        assert here.state() == before, "verify wrote to var/"
        second, install_peak = traced(installed)
        assert max(peak, install_peak) < MAX_PEAK, f"{max(peak, install_peak)} bytes at the peak"
        if isinstance(second, BundleError):
            assert here.state() == before, f"install refused ({second.code}) and changed var/"
        if isinstance(first, BundleError):
            assert isinstance(second, BundleError), f"verify refused ({first}), install did not"
            assert second.code == first.code, f"verify refused ({first}), install ({second})"
            return first.code
        assert not isinstance(second, BundleError), f"verify passed, install refused: {second}"
        assert (second["name"], second["version"], second["previous"]) == ("demo", "2.0.0", "1.0.0")
        payload = var / "bundles" / "active" / "demo" / "payload"
        found = {str(p.relative_to(payload)) for p in payload.rglob("*") if not p.is_dir()}
        assert found == set(PAYLOAD)
        assert {name: (payload / name).read_bytes() for name in PAYLOAD} == PAYLOAD
        assert (var / "models" / "tiny.gguf").read_bytes() == PAYLOAD["models/tiny.gguf"]
        return "installed"

    def report(self, what: str) -> None:
        print(f"\n{what}: {sum(self.seen.values())} examples, {dict(self.seen.most_common())}")


def traced(run: Callable[[], Any]) -> tuple[Any, int]:
    """:func:`refusal` of ``run``, and the peak of Python memory while it ran."""
    tracemalloc.start()
    try:
        outcome = refusal(run)
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# 1. bytes of the bundle file


@dataclass(frozen=True)
class Layout:
    headers: tuple[int, ...]  # where each member's header block (and its pax header) is
    regions: tuple[tuple[int, int], ...]  # headers, data of each member: [start, end)

    @classmethod
    def of(cls, bundle: Path) -> Layout:
        headers: set[int] = set()
        regions = []
        with tarfile.open(bundle) as archive:
            for member in archive.getmembers():
                headers |= {member.offset, member.offset_data - 512}
                regions.append((member.offset, member.offset_data))
                regions.append((member.offset_data, member.offset_data + max(member.size, 1)))
        size = bundle.stat().st_size
        return cls(tuple(sorted(headers)), tuple((a, min(b, size)) for a, b in regions))


@dataclass(frozen=True)
class Mutation:
    """Bytes overwritten (offset, value), then every header's checksum made right again
    (or not), bytes inserted at an offset, the file cut at a length, zeros behind it."""

    changes: tuple[tuple[int, int], ...] = ()
    checksums: bool = False
    insert: tuple[int, bytes] | None = None
    cut: int | None = None
    tail: int = 0

    def apply(self, raw: bytes, layout: Layout) -> bytes:
        data = bytearray(raw)
        for offset, value in self.changes:
            data[offset] = value
        if self.checksums:
            for start in layout.headers:
                block = data[start : start + 512]
                block[148:156] = b" " * 8
                data[start + 148 : start + 156] = b"%06o\0 " % sum(block)
        if self.insert is not None:
            offset, extra = self.insert
            data[offset:offset] = extra
        if self.cut is not None:
            del data[self.cut :]
        return bytes(data)


INTERESTING = b"\x00\x01 /.0127\x7f\x80\xff5xLKSgx"


def mutations(raw: bytes, layout: Layout) -> st.SearchStrategy[Mutation]:
    size = len(raw)
    region = st.sampled_from(layout.regions).flatmap(lambda r: st.integers(r[0], r[1] - 1))
    offset = st.one_of(
        st.integers(0, min(4096, size) - 1), region, region, st.integers(0, size - 1)
    )
    value = st.one_of(st.integers(0, 255), st.sampled_from(INTERESTING))
    inserted = st.one_of(
        st.binary(min_size=1, max_size=600),
        st.sampled_from(layout.headers).map(lambda start: raw[start : start + 512]),
        st.sampled_from([bytes(512), bytes(1024)]),
    )
    boundary = st.sampled_from(sorted({b for r in layout.regions for b in r})).flatmap(
        lambda b: st.integers(max(b - 2, 0), min(b + 2, size))
    )
    return st.builds(
        Mutation,
        changes=st.lists(st.tuples(offset, value), max_size=5).map(tuple),
        checksums=st.sampled_from([True, True, False]),
        insert=st.one_of(st.none(), st.none(), st.tuples(offset | boundary, inserted)),
        cut=st.one_of(st.none(), st.none(), st.none(), offset, boundary),
        tail=st.sampled_from([0, 0, 0, TAIL]),
    )


def test_byte_mutations_install_the_signed_payload_or_are_refused(site: Site_) -> None:
    fuzz = Fuzz.prepare(site)
    raw = fuzz.bundle.read_bytes()
    layout = Layout.of(fuzz.bundle)
    manifest_data = layout.regions[1]

    @FUZZ
    @given(mutation=mutations(raw, layout))
    @example(mutation=Mutation())  # the bundle as signed
    @example(mutation=Mutation(cut=manifest_data[0] + 10))  # ends inside the manifest
    @example(mutation=Mutation(cut=layout.headers[-1] + 600))  # inside the signature
    def run(mutation: Mutation) -> None:
        event(fuzz.check(mutation.apply(raw, layout), mutation.tail))

    run()
    fuzz.report("byte mutations")
    assert fuzz.seen["installed"] and len(fuzz.seen) >= 4, fuzz.seen


# 2. tar headers, rewritten


Text = tuple[str, str, int]  # prefix + unit * repeat: a long value without a long repr
TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
TYPES = [
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.LNKTYPE,
    tarfile.SYMTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.DIRTYPE,
    tarfile.FIFOTYPE,
    tarfile.CONTTYPE,
    tarfile.GNUTYPE_SPARSE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    b"V",
    b"Z",
]
PAX_KEYS = [
    "path",
    "linkpath",
    "size",
    "uid",
    "gid",
    "uname",
    "gname",
    "mtime",
    "atime",
    "ctime",
    "comment",
    "hdrcharset",
    "GNU.sparse.map",
    "GNU.sparse.size",
    "GNU.sparse.major",
    "GNU.sparse.minor",
    "GNU.sparse.name",
    "GNU.sparse.realsize",
    "GNU.sparse.numblocks",
    "GNU.sparse.offset",
    "GNU.sparse.numbytes",
    "SCHILY.xattr.user.x",
]
PAX_VALUES = ["0", "1", "-1", "512", "-1536", "1.5", "nan", "inf", "1e999", "BINARY", "0,1,2"]
PAX_VALUES += ["1,0", "", "x", "ISO-IR 10646 2000 UTF-8", "10000000000000000000000"]
SIZES = [0, 1, 511, 512, 513, MAX_HEADER, MAX_HEADER + 1, MAX_SIGNATURE + 1, MAX_MANIFEST]
SIZES += [MAX_MANIFEST + 1, 8**11 - 1, 8**11, 1 << 40, (1 << 63) - 1, -512, -1536]


ONE = (st.just(""), st.just(1))  # a Text that is its prefix alone


def text(value: Text) -> str:
    prefix, unit, repeat = value
    return prefix + unit * repeat


def texts(known: list[str]) -> st.SearchStrategy[Text]:
    """Names and values: the bundle's own names, names that escape or are not normal,
    any unicode, and long ones (up to past :data:`MAX_HEADER`)."""
    parts = [
        "payload",
        "..",
        ".",
        "",
        "models",
        "a" * 255,
        "é" * 128,
        "\\",
        "\x7f",
        "manifest.json",
    ]
    prefixes = ["", "payload/", "payload/knowledge/", "signatures/", "../", "/"]
    return st.one_of(
        st.tuples(st.sampled_from([*known, "../escape", "/etc/passwd", "payload/"]), *ONE),
        st.tuples(st.text(TEXT, max_size=40), *ONE),
        st.tuples(st.sampled_from(known).map(lambda n: n + "/"), *ONE),
        st.tuples(st.lists(st.sampled_from(parts), min_size=1, max_size=6).map("/".join), *ONE),
        st.tuples(
            st.sampled_from(prefixes),
            st.sampled_from(["a", "é", "../", "x/", "日", "\n"]),
            st.one_of(
                st.integers(1, 3000),
                st.sampled_from([92, 99, 100, 101, 255, 256, 392, 401, MAX_HEADER + 1, 100_000]),
            ),
        ),
    )


def pax_values(known: list[str]) -> st.SearchStrategy[Text]:
    return st.one_of(
        st.tuples(st.sampled_from(PAX_VALUES + known), *ONE),
        st.tuples(st.integers(-(1 << 70), 1 << 70).map(str), *ONE),
        st.tuples(st.text(TEXT, max_size=30), *ONE),
        st.tuples(
            st.just(""),
            st.sampled_from(["x", "é", "\n", "=", "0,"]),
            st.one_of(
                st.integers(1, 70_000),
                st.sampled_from([MAX_HEADER - 100, MAX_HEADER, MAX_HEADER + 1, 200 << 10]),
            ),
        ),
    )


@dataclass(frozen=True)
class Edit:
    """New header fields for one member (None: as it was); ``fit``: its data cut or
    padded to the new size (when that is at most 1 MiB), else the data stays as it was
    and the header lies about it."""

    member: int
    name: Text | None = None
    type: bytes | None = None
    linkname: Text | None = None
    size: int | None = None
    fit: bool = True
    pax: tuple[tuple[str, Text], ...] | None = None

    def apply(self, info: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        info = copy.copy(info)
        if self.name is not None:
            info.name = text(self.name)
        if self.type is not None:
            info.type = self.type
        if self.linkname is not None:
            info.linkname = text(self.linkname)
        if self.size is not None:
            info.size = self.size
            if self.fit and 0 <= self.size <= 1 << 20:
                data = (data + bytes(self.size))[: self.size]
        if self.pax is not None:
            info.pax_headers = {key: text(value) for key, value in self.pax}
        return info, data


@dataclass(frozen=True)
class Rewrite:
    """The bundle's members written again in ``format``, edited, in ``order`` (indices
    of the original members: some may be left out, some repeated), zeros behind."""

    format: Literal[1, 2]  # tarfile.GNU_FORMAT, tarfile.PAX_FORMAT
    edits: tuple[Edit, ...]
    order: tuple[int, ...]
    tail: int = 0

    def apply(self, members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
        edited = list(members)
        for edit in self.edits:
            edited[edit.member] = edit.apply(*edited[edit.member])
        out = io.BytesIO()
        for info, data in (edited[n] for n in self.order):
            try:
                out.write(info.tobuf(self.format, "utf-8", "surrogateescape"))
            except ValueError:  # a field tarfile cannot write in this format
                reject()
            out.write(data + bytes(-len(data) % 512))
        out.write(bytes(1024))
        return out.getvalue()


def rewrites(members: list[tuple[tarfile.TarInfo, bytes]]) -> st.SearchStrategy[Rewrite]:
    known = [info.name for info, _ in members]
    count = len(members)
    base = tuple(range(count))
    member = st.integers(0, count - 1)
    edit = st.builds(
        Edit,
        member=member,
        name=st.none() | texts(known),
        type=st.none() | st.sampled_from(TYPES),
        linkname=st.none() | texts(known),
        size=st.none()
        | st.integers(0, 4096)
        | st.integers(-2048, -1)
        | st.sampled_from(SIZES)
        | st.integers(0, 1 << 80),
        fit=st.booleans(),
        pax=st.none()
        | st.lists(
            st.tuples(
                st.sampled_from(PAX_KEYS) | st.text(TEXT, min_size=1, max_size=20),
                pax_values(known),
            ),
            max_size=4,
        ).map(tuple),
    )
    order = st.one_of(
        st.just(base),
        st.permutations(base).map(tuple),
        member.map(lambda n: base[:n] + base[n + 1 :]),  # one left out
        st.tuples(member, st.integers(0, count)).map(
            lambda m: (*base[: m[1]], m[0], *base[m[1] :])
        ),
        st.lists(member, max_size=count + 3).map(tuple),
    )
    return st.builds(
        Rewrite,
        format=st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]),
        edits=st.lists(edit, max_size=3).map(tuple),
        order=order,
        tail=st.sampled_from([0, 0, 0, TAIL]),
    )


def test_rewritten_headers_install_the_signed_payload_or_are_refused(site: Site_) -> None:
    fuzz = Fuzz.prepare(site)
    with tarfile.open(fuzz.bundle) as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]  # type: ignore[union-attr]
    base = tuple(range(len(members)))
    large = (("comment", ("", "x", MAX_HEADER + 1)),)

    @FUZZ
    @given(rewrite=rewrites(members))
    @example(rewrite=Rewrite(tarfile.GNU_FORMAT, (), base))  # the same members, in GNU format
    @example(rewrite=Rewrite(tarfile.PAX_FORMAT, (Edit(1, pax=large),), base))
    @example(rewrite=Rewrite(tarfile.PAX_FORMAT, (Edit(0, size=-2, fit=False),), base))
    def run(rewrite: Rewrite) -> None:
        event(fuzz.check(rewrite.apply(members), rewrite.tail))

    run()
    fuzz.report("rewritten headers")
    assert fuzz.seen["installed"] and len(fuzz.seen) >= 4, fuzz.seen


# the check itself


def test_the_check_catches_what_it_is_there_to_catch(site: Site_) -> None:
    fuzz = Fuzz.prepare(site)
    good = fuzz.bundle.read_bytes()
    assert fuzz.check(good) == "installed"

    def raising(*args: object) -> Any:
        raise KeyError("a traceback")

    def uncoded(*args: object) -> Any:
        raise BundleError("", "no code")

    def hoarding(*args: Any) -> Any:
        hoard = bytearray(MAX_PEAK)
        del hoard
        return verify(*args)

    def writing(bundle: BundleFile, trust: TrustStore, policy: Policy, here: Site) -> Any:
        (here.root / "written").write_text("")
        return verify(bundle, trust, policy, here)

    def half_done(here: Site, *args: Any) -> dict[str, Any]:
        (here.root / "left-behind").write_text("")
        raise BundleError("malformed", "after a write")

    def refusing(*args: object) -> Any:
        raise BundleError("unsigned", "what install accepts")

    def lenient(*args: object) -> Any:
        return None

    with pytest.raises(KeyError):
        fuzz.check(good, verify_=raising)
    with pytest.raises(KeyError):
        fuzz.check(good, install_=raising)
    for wrong, says in [
        ({"verify_": uncoded}, "a refusal without a code"),
        ({"verify_": hoarding}, "bytes at the peak"),
        ({"verify_": writing}, "verify wrote to var/"),
        ({"install_": half_done}, "install refused (malformed) and changed var/"),
        ({"verify_": refusing}, "install did not"),
    ]:
        with pytest.raises(AssertionError, match=re.escape(says)):
            fuzz.check(good, **wrong)  # type: ignore[arg-type]
    tampered = good.replace(b"rules of v2.0.0", b"rules of v2.0.1")
    with pytest.raises(AssertionError, match="verify passed, install refused: hash_mismatch"):
        fuzz.check(tampered, verify_=lenient)
