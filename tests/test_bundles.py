"""Signed bundles with the real gpg: a good bundle installs, and every kind of bad one
is refused with its own reason while the installed state stays byte-for-byte as it was;
thresholds, downgrades and an install interrupted halfway."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from botarena.bundles.archive import read_contents
from botarena.server.errors import BundleError
from tests.bundle_site import MODEL, Site_, export, gpg, rewrite
from tests.harness import make_key


def same(member: tarfile.TarInfo, data: bytes) -> list:
    return [(member, data)]


def test_a_good_bundle_installs_and_an_upgrade_switches_everything(site: Site_) -> None:
    first = site.install(site.bundle("1.0.0"))
    assert (first["name"], first["version"], first["previous"]) == ("demo", "1.0.0", None)
    assert first["signed_by"] == [site.keys[0]]
    installed = site.var / "bundles" / "active" / "demo"
    assert installed.is_symlink()
    assert (installed / "payload/knowledge/demo/rules.md").read_text() == "rules of v1.0.0\n"
    model = site.var / "models" / "tiny.gguf"
    assert model.read_bytes() == MODEL + b"1.0.0"  # where llama.cpp finds models

    second = site.install(site.bundle("1.1.0"))
    assert (second["version"], second["previous"]) == ("1.1.0", "1.0.0")
    assert (installed / "payload/knowledge/demo/rules.md").read_text() == "rules of v1.1.0\n"
    assert model.read_bytes() == MODEL + b"1.1.0"  # the model followed the switch
    assert [b["version"] for b in site.site.listing()] == ["1.1.0"]
    history = (site.var / "bundles" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2


def _bad_signature(site: Site_) -> Path:
    """Bundle B's manifest with the signature made over bundle A's manifest."""
    signed = site.bundle("2.0.0")
    other = site.bundle("2.0.0", {"personas/ada.yaml": b"id: mallory\n"}, sign_with=[])
    signature = read_contents(signed).signatures
    ((fpr, armored),) = signature.items()
    from botarena.bundles.archive import add_signature

    add_signature(other, fpr, armored)
    return other


def _untrusted_key(site: Site_) -> Path:
    stranger = make_key(site.signers, "stranger")
    gpg(
        site.trust.home, "--import", input=gpg(site.signers, "--armor", "--export", stranger).stdout
    )
    return site.bundle("2.0.0", sign_with=[stranger])  # in the keyring, never pinned


def _expired_key(site: Site_) -> Path:
    past = ["--faked-system-time", "20200101T000000"]
    gpg(
        site.signers,
        *past,
        "--passphrase",
        "",
        "--pinentry-mode",
        "loopback",
        "--quick-gen-key",
        "old <old@site.local>",
        "ed25519",
        "sign",
        "1d",
    )
    fpr = next(
        line.split(":")[9]
        for line in gpg(site.signers, "--with-colons", "--list-keys", "old@site.local")
        .stdout.decode()
        .splitlines()
        if line.startswith("fpr")
    )
    site.trust.add(export(site.signers, fpr, site.root / "old.asc"), fpr)
    bundle = site.bundle("2.0.0", sign_with=[])
    armored = gpg(
        site.signers,
        *past,
        "--armor",
        "--detach-sign",
        "--local-user",
        fpr,
        input=read_contents(bundle).manifest_bytes,
    ).stdout.decode()
    from botarena.bundles.archive import add_signature

    add_signature(bundle, fpr, armored)
    return bundle


def _revoked_key(site: Site_) -> Path:
    bundle = site.bundle("2.0.0")
    certificate = site.signers / "openpgp-revocs.d" / f"{site.keys[0]}.rev"
    text = certificate.read_text().replace(":-----BEGIN", "-----BEGIN")
    gpg(site.trust.home, "--import", input=text.encode())
    return bundle


def _tampered_payload(site: Site_) -> Path:
    def change(member: tarfile.TarInfo, data: bytes) -> list:
        if member.name == "payload/knowledge/demo/rules.md":
            data = data.replace(b"rules", b"RULES")  # same size, other bytes
        return [(member, data)]

    return rewrite(site.bundle("2.0.0"), site.root / "tampered.tar", change)


def _resized_payload(site: Site_) -> Path:
    def change(member: tarfile.TarInfo, data: bytes) -> list:
        if member.name == "payload/knowledge/demo/rules.md":
            data = data[:-2]
            member.size = len(data)
        return [(member, data)]

    return rewrite(site.bundle("2.0.0"), site.root / "resized.tar", change)


def _extra_file(site: Site_) -> Path:
    def change(member: tarfile.TarInfo, data: bytes) -> list:
        if member.name != "manifest.json":
            return [(member, data)]
        extra = tarfile.TarInfo("payload/config/sneaky.toml")
        extra.size = 5
        return [(member, data), (extra, b"x=1\n\n")]

    return rewrite(site.bundle("2.0.0"), site.root / "extra.tar", change)


def _missing_file(site: Site_) -> Path:
    return rewrite(
        site.bundle("2.0.0"),
        site.root / "missing.tar",
        lambda m, d: [] if m.name == "payload/personas/ada.yaml" else [(m, d)],
    )


def _member(name: str, kind: bytes = tarfile.REGTYPE, **fields: object) -> Callable:
    def change(member: tarfile.TarInfo, data: bytes) -> list:
        if member.name != "manifest.json":
            return [(member, data)]
        added = tarfile.TarInfo(name)
        added.type = kind
        for key, value in fields.items():
            setattr(added, key, value)
        return [(member, data), (added, b"")]

    return change


def _hostile(name: str, kind: bytes = tarfile.REGTYPE, **fields: object) -> Callable:
    def make(site: Site_) -> Path:
        return rewrite(
            site.bundle("2.0.0"), site.root / "hostile.tar", _member(name, kind, **fields)
        )

    return make


def _expanding(site: Site_) -> Path:
    """A gzip archive whose model member unpacks to 64 MiB where 16 KiB are declared."""
    good = site.bundle("2.0.0")
    out = site.root / "bomb.tar.gz"
    with (
        tarfile.open(good) as source,
        gzip.open(out, "wb") as raw,
        tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as dest,
    ):
        for member in source.getmembers():
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "payload/models/tiny.gguf":
                data = bytes(64 * 1024 * 1024)
                member.size = len(data)
            dest.addfile(member, io.BytesIO(data))
    assert out.stat().st_size < 1024 * 1024
    return out


def _garbage(site: Site_) -> Path:
    out = site.root / "garbage.tar"
    out.write_bytes(os.urandom(4096))
    return out


REFUSALS: list[tuple[str, Callable[[Site_], Path], str, dict]] = [
    ("unsigned", lambda s: s.bundle("2.0.0", sign_with=[]), "carries no signature", {}),
    ("bad_signature", _bad_signature, "does not match", {}),
    (
        "unknown_key",
        lambda s: s.bundle("2.0.0", sign_with=[make_key(s.signers, "x")]),
        "is not known here",
        {},
    ),
    ("untrusted_key", _untrusted_key, "is not a trusted key", {}),
    ("expired_key", _expired_key, "has expired", {}),
    ("revoked_key", _revoked_key, "is revoked", {}),
    (
        "threshold",
        lambda s: s.bundle("2.0.0"),
        "1 good trusted signature(s), 2 needed",
        {"threshold": 2},
    ),
    (
        "expired",
        lambda s: s.bundle("2.0.0"),
        "expired on",
        {"now": datetime.now(UTC) + timedelta(days=31)},
    ),
    ("too_new", lambda s: s.bundle("2.0.0", min_botarena="99.0"), "needs BotArena 99.0", {}),
    ("rollback", lambda s: s.bundle("1.0.0"), "is not newer than the installed 1.0.0", {}),
    ("rollback", lambda s: s.bundle("0.9.0"), "--allow-downgrade", {}),
    ("hash_mismatch", _tampered_payload, "does not match its SHA-256", {}),
    ("size_mismatch", _resized_payload, "the manifest says", {}),
    ("extra_file", _extra_file, "not in the manifest: config/sneaky.toml", {}),
    ("missing_file", _missing_file, "listed but missing: personas/ada.yaml", {}),
    ("unsafe_path", _hostile("/etc/cron.d/evil"), "not a relative path", {}),
    ("unsafe_path", _hostile("payload/../../escape"), "escapes", {}),
    (
        "link",
        _hostile("payload/models/evil", tarfile.SYMTYPE, linkname="/etc/passwd"),
        "is a link",
        {},
    ),
    (
        "link",
        _hostile("payload/models/hard", tarfile.LNKTYPE, linkname="manifest.json"),
        "is a link",
        {},
    ),
    (
        "special_file",
        _hostile("payload/dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        "not a regular file",
        {},
    ),
    ("special_file", _hostile("payload/fifo", tarfile.FIFOTYPE), "not a regular file", {}),
    ("compressed", _expanding, "not a plain tar", {}),
    ("malformed", _garbage, "not a readable bundle", {}),
]


@pytest.mark.parametrize(
    ("code", "make", "says", "policy"),
    REFUSALS,
    ids=[f"{code}-{n}" for n, (code, *_rest) in enumerate(REFUSALS)],
)
def test_each_bad_bundle_is_refused_and_changes_nothing(
    site: Site_, code: str, make: Callable[[Site_], Path], says: str, policy: dict
) -> None:
    site.install(site.bundle("1.0.0"))
    bad = make(site)
    before = site.state()
    with pytest.raises(BundleError) as verified:
        site.verify(bad, **policy)
    assert verified.value.code == code and says in verified.value.message
    with pytest.raises(BundleError) as refused:
        site.install(bad, **policy)
    assert refused.value.code == code
    assert site.state() == before


def test_two_of_three_trusted_keys(site: Site_) -> None:
    two = site.bundle("1.0.0", sign_with=site.keys[:2])
    checks = site.verify(two, threshold=2)
    assert sorted(c.fingerprint for c in checks if c.counts) == sorted(site.keys[:2])
    with pytest.raises(BundleError, match="1 good trusted signature"):
        site.verify(site.bundle("1.0.0", sign_with=site.keys[2:]), threshold=2)
    # a second signature by a key nobody trusts does not make up the number
    stranger = make_key(site.signers, "stranger")
    mixed = site.bundle("1.0.0", sign_with=[site.keys[0], stranger])
    with pytest.raises(BundleError) as refused:
        site.verify(mixed, threshold=2)
    assert refused.value.code == "threshold" and "is not known here" in refused.value.message
    assert site.install(two, threshold=2)["signed_by"] == sorted(site.keys[:2])


def test_an_install_interrupted_halfway_leaves_nothing_behind(site: Site_) -> None:
    site.install(site.bundle("1.0.0"))
    before = site.state()
    upgrade = site.bundle("1.1.0")
    seen = 0

    def power_cut(done: int) -> None:
        nonlocal seen
        seen += done
        if seen > len(MODEL) // 2:
            raise KeyboardInterrupt  # Ctrl-C, or anything else, halfway through

    with pytest.raises(KeyboardInterrupt):
        site.install(upgrade, power_cut)
    assert site.state() == before
    assert not list((site.var / "bundles").glob(".staging-*"))

    # an install that died outright leaves a staging folder: the next one clears it
    (site.var / "bundles" / ".staging-dead").mkdir()
    assert site.install(upgrade)["version"] == "1.1.0"
    assert not (site.var / "bundles" / ".staging-dead").exists()


def _spec(root: Path, include: list[dict[str, str]], **fields: object) -> Path:
    (root / "a.txt").write_text("a\n")
    (root / "folder").mkdir()
    (root / "folder" / "b.txt").write_text("b\n")
    spec = root / "spec.yaml"
    spec.write_text(json.dumps({"name": "demo", "version": "1.0", "include": include, **fields}))
    return spec


@pytest.mark.parametrize(
    ("include", "fields", "says"),
    [
        ([{"from": "a.txt", "to": "x"}, {"from": "a.txt", "to": "x"}], {}, "included twice"),
        ([{"from": "missing.txt", "to": "x"}], {}, "missing.txt does not exist"),
        ([{"from": "a.txt", "to": "../x"}], {}, "path escapes or is not normal"),
        ([{"from": "a.txt", "to": "x"}], {"version": "one"}, "not a version"),
        (
            [{"from": "a.txt", "to": "config"}, {"from": "folder", "to": "config"}],
            {},
            "config is both a file and a folder",
        ),
    ],
)
def test_a_spec_that_cannot_be_built_is_refused_as_a_spec(
    tmp_path: Path, include: list[dict[str, str]], fields: dict, says: str
) -> None:
    from botarena.bundles.build import build

    with pytest.raises(BundleError) as refused:
        build(_spec(tmp_path, include, **fields), tmp_path / "out.tar")
    assert refused.value.code == "spec" and says in refused.value.message
    assert not (tmp_path / "out.tar").exists()


def test_a_spec_that_is_not_yaml_is_refused_as_a_spec(tmp_path: Path) -> None:
    from botarena.bundles.build import collect

    (tmp_path / "spec.yaml").write_text("name: [unclosed\n")
    with pytest.raises(BundleError) as refused:
        collect(tmp_path / "spec.yaml")
    assert refused.value.code == "spec" and "is not YAML" in refused.value.message


def test_keys_and_signing_keys_that_do_not_fit_are_refused_by_class(site: Site_) -> None:
    from botarena.bundles.build import sign

    key_file = export(site.signers, site.keys[1], site.root / "other.asc")
    for refusal, says in [
        (lambda: site.trust.add(key_file, site.keys[0]), f"not {site.keys[0]}"),
        (lambda: site.trust.add(key_file, "not hex"), "not a full 40-hex-digit fingerprint"),
        (lambda: site.trust.remove("F" * 40), "is not a trusted key"),
    ]:
        with pytest.raises(BundleError) as refused:
            refusal()
        assert refused.value.code == "key" and says in refused.value.message
    bundle = site.bundle("1.0.0", sign_with=[])
    for key, says in [("F" * 40, "cannot sign with"), ("short", "not a full 40-hex-digit")]:
        with pytest.raises(BundleError) as refused:
            sign(bundle, key, site.signers)
        assert refused.value.code == "sign" and says in refused.value.message
    site.trust.pins.write_text("not json")
    with pytest.raises(BundleError) as refused:
        site.trust.listing()
    assert refused.value.code == "key" and "cannot be read" in refused.value.message


def test_a_deliberate_downgrade_is_allowed_and_recorded(site: Site_) -> None:
    site.install(site.bundle("1.1.0"))
    record = site.install(site.bundle("1.0.0"), None, "1.1.0 misbehaves", allow_downgrade=True)
    assert (record["version"], record["previous"], record["downgrade"]) == ("1.0.0", "1.1.0", True)
    assert record["reason"] == "1.1.0 misbehaves"
    assert (site.var / "models" / "tiny.gguf").read_bytes() == MODEL + b"1.0.0"


def test_the_bundle_and_keys_commands_end_to_end(site: Site_, database_url: str) -> None:
    from tests.test_cli import botarena

    var = site.root / "cli-var"
    settings = {"trust_dir": str(site.root / "t"), "database_url": database_url}
    key_file = export(site.signers, site.keys[1], site.root / "release1.asc")

    wrong = botarena(var, "keys", "add", str(key_file), "--fingerprint", site.keys[0], **settings)
    assert wrong.returncode == 1 and f"not {site.keys[0]}" in wrong.stderr
    unknown = botarena(var, "keys", "remove", "F" * 40, **settings)
    assert unknown.returncode == 1 and "refused (key): " in unknown.stderr
    bad = botarena(var, "keys", "list", **settings, bundle_threshold="many")
    assert bad.returncode == 1 and "bad settings" in bad.stderr and "Traceback" not in bad.stderr
    added = botarena(var, "keys", "add", str(key_file), "--fingerprint", site.keys[1], **settings)
    assert added.returncode == 0, added.stderr
    listed = botarena(var, "keys", "list", "--json", **settings)
    assert [(k["fingerprint"], k["state"]) for k in json.loads(listed.stdout)["keys"]] == [
        (site.keys[1], "ok")
    ]

    bundle = site.bundle("3.0.0", sign_with=[])
    # a key with no secret here is refused, not replaced by another secret key of the home
    missing = ["bundle", "sign", str(bundle), "--key", "F" * 40, "--gnupg-home", str(site.signers)]
    not_here = botarena(var, *missing, "--json", **settings)
    assert not_here.returncode == 1 and json.loads(not_here.stdout)["code"] == "sign"
    assert read_contents(bundle).signatures == {}
    signed = botarena(
        var,
        "bundle",
        "sign",
        str(bundle),
        "--key",
        site.keys[1],
        "--gnupg-home",
        str(site.signers),
        "--json",
        **settings,
    )
    assert json.loads(signed.stdout) == {
        "ok": True,
        "bundle": str(bundle),
        "signed_by": site.keys[1],
    }
    checked = json.loads(
        botarena(var, "bundle", "verify", str(bundle), "--json", **settings).stdout
    )
    assert (checked["ok"], checked["version"], checked["signed_by"]) == (
        True,
        "3.0.0",
        [site.keys[1]],
    )

    done = botarena(var, "bundle", "install", str(bundle), "--json", **settings)
    record = json.loads(done.stdout)
    assert (record["ok"], record["version"], record["audited"]) == (True, "3.0.0", True)
    again = botarena(var, "bundle", "install", str(bundle), "--json", **settings)
    assert again.returncode == 1
    assert json.loads(again.stdout) == {
        "ok": False,
        "code": "rollback",
        "error": "demo 3.0.0 is not newer than the installed 3.0.0 (a deliberate downgrade "
        "needs --allow-downgrade and a reason)",
    }
    no_reason = botarena(var, "bundle", "install", str(bundle), "--allow-downgrade", **settings)
    assert no_reason.returncode == 1 and "needs --reason" in no_reason.stderr
    forced = botarena(
        var,
        "bundle",
        "install",
        str(bundle),
        "--allow-downgrade",
        "--reason",
        "reinstall",
        **settings,
    )
    assert forced.returncode == 0 and "installed demo 3.0.0 (was 3.0.0)" in forced.stdout

    audit_log = botarena(var, "audit", "log", **settings).stdout
    assert "bundle.installed" in audit_log and "bundle.downgraded" in audit_log
    assert "intact" in botarena(var, "audit", "verify", **settings).stdout

    removed = botarena(var, "keys", "remove", site.keys[1], **settings)
    assert removed.returncode == 0
    untrusted = botarena(var, "bundle", "verify", str(bundle), **settings)
    assert untrusted.returncode == 1 and "refused (unknown_key)" in untrusted.stderr
    listing = json.loads(botarena(var, "bundle", "list", "--json", **settings).stdout)
    assert [(b["name"], b["version"]) for b in listing["bundles"]] == [("demo", "3.0.0")]


MODELFILE = '''FROM ./tiny.gguf
# the demo assistant
TEMPLATE """{{ .System }}
{{ .Prompt }}"""
SYSTEM "You are terse."
PARAMETER temperature 0.2
PARAMETER stop "<|im_end|>"
PARAMETER stop "<|endoftext|>"
'''


async def test_models_with_a_modelfile_go_into_ollama_through_its_api(site: Site_) -> None:
    from tests.ollama_standin import ollama_standin

    files = {"models/tiny.gguf": MODEL, "models/tiny.Modelfile": MODELFILE.encode()}
    bundle = site.bundle("1.0.0", files)
    async with ollama_standin([]) as ollama:
        record = await asyncio.to_thread(site.install, bundle, None, "", ollama.url)
        digest = "sha256:" + hashlib.sha256(MODEL).hexdigest()
        assert record["ollama_models"] == ["tiny"]
        assert ollama.blobs == {digest: MODEL}  # Ollama checked the digest on upload
        assert ollama.created["tiny:latest"] == {
            "model": "tiny",
            "files": {"tiny.gguf": digest},
            "template": "{{ .System }}\n{{ .Prompt }}",
            "system": "You are terse.",
            "parameters": {"temperature": 0.2, "stop": ["<|im_end|>", "<|endoftext|>"]},
            "stream": False,
        }
        # a second install finds the blob there and does not upload it again
        await asyncio.to_thread(site.install, site.bundle("1.1.0", files), None, "", ollama.url)
        uploads = [r for r in ollama.requests if r[0] == "POST" and "/api/blobs/" in r[1]]
        assert len(uploads) == 1


def test_an_ollama_that_does_not_answer_leaves_the_site_unchanged(site: Site_) -> None:
    from tests.services import free_port

    site.install(site.bundle("1.0.0"))
    before = site.state()
    files = {"models/tiny.gguf": MODEL, "models/tiny.Modelfile": MODELFILE.encode()}
    with pytest.raises(BundleError) as refused:
        site.install(site.bundle("1.1.0", files), None, "", f"http://127.0.0.1:{free_port()}")
    assert refused.value.code == "ollama" and "did not answer" in refused.value.message
    assert site.state() == before


async def test_a_modelfile_ollama_cannot_read_is_refused_before_any_upload(site: Site_) -> None:
    from tests.ollama_standin import ollama_standin

    files = {"models/tiny.gguf": MODEL, "models/tiny.Modelfile": b"FROM ./tiny.gguf\nBOGUS x\n"}
    bundle = site.bundle("1.0.0", files)
    async with ollama_standin([]) as ollama:
        with pytest.raises(BundleError) as refused:
            await asyncio.to_thread(site.install, bundle, None, "", ollama.url)
        uploads = [r for r in ollama.requests if "/api/blobs/" in r[1]]
    assert refused.value.code == "ollama"
    assert refused.value.message == (
        "models/tiny.Modelfile: not a Modelfile instruction: 'BOGUS x'"
    )
    assert uploads == []
