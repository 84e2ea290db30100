"""Hostile and damaged bundles by class: names that aim at the site's bookkeeping or at
another bundle's model, a file that changes between the two reads, inputs that once
ended in a traceback, headers built to exhaust memory, and times in the future. Each is
refused with its code and leaves ``var/`` byte for byte as it was, by ``verify`` as
well as by ``install``; a verify leaves the trust folder as it was too."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from botarena.bundles import archive
from botarena.bundles.archive import MANIFEST, SIGNATURES, BundleFile, add_signature
from botarena.bundles.install import Policy, verify
from botarena.server.errors import BundleError
from tests.bundle_site import MODEL, Site_, gpg, rewrite
from tests.test_cli import botarena


def resigned(site: Site_, bundle: Path, change: Callable[[dict], None], out: str) -> Path:
    """``bundle`` with its manifest changed by ``change`` and signed again by the first
    release key: a bundle a trusted signer really made."""
    manifest = json.loads(archive.read_contents(bundle).manifest_bytes)
    change(manifest)
    raw = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()

    def swap(member: tarfile.TarInfo, data: bytes) -> list:
        if member.name.startswith(SIGNATURES):
            return []
        if member.name == MANIFEST:
            member.size = len(raw)
            return [(member, raw)]
        return [(member, data)]

    path = rewrite(bundle, site.root / out, swap)
    armored = gpg(
        site.signers, "--armor", "--detach-sign", "--local-user", site.keys[0], input=raw
    ).stdout.decode()
    append(path, f"{SIGNATURES}{site.keys[0]}.asc", armored.encode())
    return path


def append(path: Path, name: str, data: bytes) -> None:
    """Add a member at the end of ``path`` with no check at all."""
    with tarfile.open(path, "a", format=tarfile.PAX_FORMAT) as bundle:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        bundle.addfile(info, io.BytesIO(data))


def refused(site: Site_, bundle: Path, code: str, says: str = "", **policy: object) -> None:
    """Both verify and install refuse ``bundle`` with ``code``; var/ is unchanged."""
    before = site.state()
    with pytest.raises(BundleError) as verified:
        site.verify(bundle, **policy)
    assert (verified.value.code, site.state()) == (code, before), verified.value.message
    assert says in verified.value.message
    with pytest.raises(BundleError) as installed:
        site.install(bundle, **policy)
    assert installed.value.code == code and says in installed.value.message
    assert site.state() == before


# names that collide with the site's bookkeeping or with another bundle


@pytest.mark.parametrize("name", ["history.jsonl", "store", "active", "journal.json", "models"])
def test_a_bundle_named_like_the_sites_bookkeeping_is_just_a_bundle(site: Site_, name: str) -> None:
    site.install(site.bundle("1.0.0"))
    files = {"knowledge/x/readme.md": b"a bundle called " + name.encode()}
    assert site.install(site.bundle("1.0.0", files, name=name))["name"] == name
    assert site.install(site.bundle("1.1.0"))["previous"] == "1.0.0"  # demo still upgrades
    assert site.install(site.bundle("1.1.0", files, name=name))["previous"] == "1.0.0"
    assert [(r["name"], r["version"]) for r in site.site.records()] == [
        ("demo", "1.0.0"),
        (name, "1.0.0"),
        ("demo", "1.1.0"),
        (name, "1.1.0"),
    ]
    assert sorted((b["name"], b["version"]) for b in site.site.listing()) == sorted(
        [("demo", "1.1.0"), (name, "1.1.0")]
    )
    assert (site.var / "models" / "tiny.gguf").read_bytes() == MODEL + b"1.1.0"


def test_a_model_of_another_bundle_is_never_taken_over(site: Site_) -> None:
    site.install(site.bundle("1.0.0"))
    thief = site.bundle("1.0.0", {"models/tiny.gguf": b"GGUF not yours"}, name="other")
    refused(site, thief, "conflict", "model tiny.gguf belongs to the installed bundle demo")
    # the site's own model file is not a bundle's either
    (site.var / "models" / "mine.gguf").write_bytes(b"GGUF local")
    mine = site.bundle("1.0.0", {"models/mine.gguf": b"GGUF bundled"}, name="other")
    refused(site, mine, "conflict", "is not a bundle's model")


# a file that changes between the two reads


def _missing(member: tarfile.TarInfo, data: bytes) -> list:
    return [] if member.name == "payload/personas/ada.yaml" else [(member, data)]


def _unlisted(member: tarfile.TarInfo, data: bytes) -> list:
    if member.name != "payload/personas/ada.yaml":
        return [(member, data)]
    extra = tarfile.TarInfo("payload/personas/eve.yaml")
    extra.size = 8
    return [(member, data), (extra, b"id: eve\n")]


def _doubled(member: tarfile.TarInfo, data: bytes) -> list:
    return [(member, data)] * (2 if member.name == "payload/personas/ada.yaml" else 1)


def _same_size_other_bytes(member: tarfile.TarInfo, data: bytes) -> list:
    return [(member, data.replace(b"GGUF", b"FUGG") if member.name.endswith(".gguf") else data)]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (_missing, "changed"),
        (_unlisted, "changed"),
        (_doubled, "changed"),
        (_same_size_other_bytes, "hash_mismatch"),  # the only read of those bytes
    ],
    ids=["missing", "unlisted", "doubled", "payload"],
)
def test_a_file_changed_between_the_two_reads_is_refused(
    site: Site_, change: Callable, code: str
) -> None:
    site.install(site.bundle("1.0.0"))
    good = site.bundle("2.0.0")
    other = rewrite(good, site.root / "other.tar", change).read_bytes()
    before = site.state()

    def swap_file(step: str) -> None:  # once pass one is done, as a copy tool might
        if step == "stage":
            with open(good, "r+b") as handle:
                handle.write(other)
                handle.truncate()

    with pytest.raises(BundleError) as caught:
        site.install(good, None, "", None, swap_file)
    assert caught.value.code == code, caught.value.message
    assert site.state() == before

    fresh = site.bundle("2.0.0")
    with BundleFile(fresh) as opened:
        assert opened.contents.manifest.version == "2.0.0"  # pass one
        fresh.write_bytes(fresh.read_bytes())  # the same bytes, written again: a change
        with pytest.raises(BundleError) as caught:
            verify(opened, site.trust, Policy(), site.site)
    assert caught.value.code == "changed" and "changed while it was read" in caught.value.message
    assert site.state() == before


def test_a_bundle_that_is_not_a_regular_file_is_refused_at_once(site: Site_) -> None:
    fifo = site.root / "bundle.fifo"
    os.mkfifo(fifo)  # opening it blocks until a writer comes: it must not hang verify
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(BundleError) as caught:
            BundleFile(path)
        assert caught.value.code == "unreadable" and "not a regular file" in caught.value.message
    answer = botarena(site.var, "bundle", "verify", str(fifo), "--json", trust_dir=str(site.root))
    assert json.loads(answer.stdout)["code"] == "unreadable"


# inputs that once ended in a traceback


def _manifest(change: Callable[[dict], None]) -> Callable[[Site_], Path]:
    return lambda site: resigned(site, site.bundle("2.0.0"), change, "crafted.tar")


def _long_part(manifest: dict) -> None:
    manifest["files"].append({"path": "knowledge/" + "x" * 300, "size": 0, "sha256": "0" * 64})


def _file_and_folder(manifest: dict) -> None:
    manifest["files"].append({"path": "personas/ada.yaml/inner", "size": 0, "sha256": "0" * 64})


def _naive(field: str) -> Callable[[dict], None]:
    def change(manifest: dict) -> None:
        manifest[field] = manifest[field].replace("Z", "").split("+")[0]

    return change


def _truncated_sparse(site: Site_) -> Path:
    def add(member: tarfile.TarInfo, data: bytes) -> list:
        if member.name != MANIFEST:
            return [(member, data)]
        sparse = tarfile.TarInfo("payload/models/holes.bin")
        sparse.type = tarfile.GNUTYPE_SPARSE
        return [(member, data), (sparse, b"")]

    path = rewrite(site.bundle("2.0.0"), site.root / "sparse.tar", add)
    raw = path.read_bytes()
    path.write_bytes(raw[: raw.index(b"payload/models/holes.bin") + 512])
    return path


def _many_signatures(site: Site_) -> Path:
    bundle = site.bundle("2.0.0")
    for n in range(archive.MAX_SIGNATURES + 1):
        append(bundle, f"{SIGNATURES}{n:040X}.asc", b"-----BEGIN PGP SIGNATURE-----\n")
    return bundle


def _huge_pax(size: int, compress: bool) -> Callable[[Site_], Path]:
    """A pax header of ``size`` bytes before the first payload member."""

    def make(site: Site_) -> Path:
        def change(member: tarfile.TarInfo, data: bytes) -> list:
            if member.name == "payload/knowledge/demo/rules.md":
                member.pax_headers = {"comment": "x" * size}
            return [(member, data)]

        path = rewrite(site.bundle("2.0.0"), site.root / "pax.tar", change)
        if compress:
            packed = site.root / "pax.tar.gz"
            packed.write_bytes(gzip.compress(path.read_bytes(), 9))
            return packed
        return path

    return make


def _future_signature(site: Site_) -> Path:
    bundle = site.bundle("2.0.0", sign_with=[])
    ahead = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y%m%dT%H%M%S")
    armored = gpg(
        site.signers,
        "--faked-system-time",
        ahead,
        "--armor",
        "--detach-sign",
        "--local-user",
        site.keys[0],
        input=archive.read_contents(bundle).manifest_bytes,
    ).stdout.decode()
    add_signature(bundle, site.keys[0], armored)
    return bundle


def _ahead(days: int) -> Callable[[dict], None]:
    def change(manifest: dict) -> None:
        created = datetime.now(UTC) + timedelta(days=days)
        manifest["created"] = created.isoformat()
        manifest["expires"] = (created + timedelta(days=30)).isoformat()

    return change


CLASSES: list[tuple[str, Callable[[Site_], Path], str, str]] = [
    ("long_part", _manifest(_long_part), "malformed", "path too long"),
    ("file_and_folder", _manifest(_file_and_folder), "malformed", "both a file and a folder"),
    ("naive_created", _manifest(_naive("created")), "malformed", "timezone"),
    ("naive_expires", _manifest(_naive("expires")), "malformed", "timezone"),
    ("truncated_sparse", _truncated_sparse, "special_file", "sparse"),
    ("many_signatures", _many_signatures, "too_large", "signatures"),
    ("huge_pax", _huge_pax(8 << 20, compress=False), "too_large", "extended tar header"),
    ("huge_pax_gzip", _huge_pax(64 << 20, compress=True), "compressed", "decompress it first"),
    ("future_signature", _future_signature, "future", "was signed by"),
    ("created_a_year_ahead", _manifest(_ahead(365)), "future", "was created"),
]


@pytest.mark.parametrize(
    ("make", "code", "says"), [c[1:] for c in CLASSES], ids=[c[0] for c in CLASSES]
)
def test_each_class_is_refused_with_its_code_in_bounded_memory(
    site: Site_, make: Callable[[Site_], Path], code: str, says: str
) -> None:
    site.install(site.bundle("1.0.0"))
    bad = make(site)
    tracemalloc.start()
    try:
        refused(site, bad, code, says)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak} bytes at the peak"


def test_the_clock_tolerance_lets_a_signer_slightly_ahead_through(site: Site_) -> None:
    ahead = resigned(site, site.bundle("2.0.0"), _ahead(0), "now.tar")
    assert site.install(ahead)["version"] == "2.0.0"
    refused(site, _manifest(_ahead(1))(site), "future", "by more than 1:00:00")


def test_too_many_members_are_refused_before_they_are_read(
    site: Site_, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = site.bundle("1.0.0")
    monkeypatch.setattr(archive, "MAX_MEMBERS", 3)
    refused(site, bundle, "too_large", "more than 3 members")


def test_a_version_is_installed_in_its_normal_form(site: Site_) -> None:
    def padded(manifest: dict) -> None:
        manifest["version"] = " 2.0.0\n"

    record = site.install(resigned(site, site.bundle("2.0.0"), padded, "padded.tar"))
    assert record["version"] == "2.0.0"
    assert [b["version"] for b in site.site.listing()] == ["2.0.0"]
    folders = [p.name for p in (site.var / "bundles" / "store").iterdir()]
    assert len(folders) == 1 and folders[0].startswith("demo-2.0.0-") and "\n" not in folders[0]


def test_verify_leaves_the_trust_folder_byte_for_byte(site: Site_) -> None:
    def snapshot() -> dict[str, tuple[str, int]]:
        """Each entry's bytes and modification time (a lock file made and removed
        shows in its folder's)."""
        found = {}
        for path in [site.trust.directory, *sorted(site.trust.directory.rglob("*"))]:
            if path.is_socket():
                continue
            content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            found[str(path.relative_to(site.trust.directory))] = (content, path.stat().st_mtime_ns)
        return found

    good, bad = site.bundle("1.0.0"), _future_signature(site)
    before = snapshot()
    settings = {"trust_dir": str(site.trust.directory)}
    assert botarena(site.var, "bundle", "verify", str(good), **settings).returncode == 0
    assert botarena(site.var, "bundle", "verify", str(bad), **settings).returncode == 1
    assert botarena(site.var, "keys", "list", **settings).returncode == 0
    assert snapshot() == before
    assert not (site.var / "bundles").exists()  # nothing written on a site with no bundles
