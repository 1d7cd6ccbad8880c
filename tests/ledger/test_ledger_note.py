"""C2SP signed notes, checkpoints, cosignatures and witnesses."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowbureau.ledger.checkpoint import (
    Checkpoint,
    TrustPolicy,
    add_cosignatures,
    open_checkpoint,
    sign_checkpoint,
)
from flowbureau.ledger.merkle import EMPTY_ROOT, MerkleTree
from flowbureau.ledger.note import (
    COSIGNATURE_V1,
    CosignatureSigner,
    Ed25519NoteSigner,
    InvalidNoteError,
    NoteSignature,
    NoteVerificationError,
    NoteVerifier,
    cosigned_message,
    format_note,
    open_note,
    parse_note,
    sign_note,
)
from flowbureau.ledger.witness import (
    AddCheckpointRequest,
    SplitViewError,
    StaleOldSizeError,
    Witness,
    WitnessRefusedError,
)

EM = "\u2014"

# c2sp.org/signed-note, "Verifier keys / Example".
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    f"{EM} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3"
    "mFXmRKuwHjG1Yu72IneyaQM=\n"
)
# golang.org/x/mod/sumdb/note package documentation (the reference implementation).
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG = (
    f"{EM} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdn"
    "gotpRZb6KE6RyyBwJnAM=\n"
)
# c2sp.org/tlog-cosignature example: a checkpoint with a witness cosignature line.
SPEC_CHECKPOINT_TEXT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
SPEC_COSIGNATURE = (
    f"{EM} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dl"
    "rDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)


def _go_private_key() -> Ed25519PrivateKey:
    material = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert material[0] == 0x01
    return Ed25519PrivateKey.from_private_bytes(material[1:])


def test_spec_example_note_verifies() -> None:
    verifier = NoteVerifier.from_vkey(SPEC_VKEY)
    assert verifier.vkey == SPEC_VKEY
    note, verified = open_note(SPEC_NOTE.encode(), [verifier])
    assert note.text == "This is an example message.\n"
    assert verified[0][0] == verifier
    assert format_note(note) == SPEC_NOTE.encode()


def test_go_reference_signature_is_reproduced_byte_for_byte() -> None:
    signer = Ed25519NoteSigner("PeterNeumann", _go_private_key())
    assert signer.key_id.hex() == "c74f20a3"
    assert signer.verifier().vkey == GO_VKEY
    note = sign_note(GO_TEXT, [signer])
    assert format_note(note) == (GO_TEXT + "\n" + GO_SIG).encode()


def test_verifier_key_manglings_are_refused() -> None:
    # As in the Go reference tests: every proper substring and every single-byte increment.
    for i in range(len(GO_VKEY) + 1):
        for j in range(i + 1, len(GO_VKEY) + 1):
            if (i, j) != (0, len(GO_VKEY)):
                with pytest.raises(InvalidNoteError):
                    NoteVerifier.from_vkey(GO_VKEY[i:j])
    for i in range(len(GO_VKEY)):
        mangled = GO_VKEY[:i] + chr(ord(GO_VKEY[i]) + 1) + GO_VKEY[i + 1 :]
        with pytest.raises(InvalidNoteError):
            NoteVerifier.from_vkey(mangled)


def test_unknown_signatures_are_ignored_and_bad_known_ones_reject() -> None:
    verifier = NoteVerifier.from_vkey(GO_VKEY)
    other = Ed25519NoteSigner("someone.else", Ed25519PrivateKey.generate())
    note = sign_note(GO_TEXT, [other, Ed25519NoteSigner("PeterNeumann", _go_private_key())])
    _, verified = open_note(format_note(note), [verifier])
    assert [v for v, _ in verified] == [verifier]
    with pytest.raises(NoteVerificationError, match="unknown key"):
        open_note(format_note(note), [verifier], strict=True)
    with pytest.raises(NoteVerificationError, match="no signature from a trusted key"):
        open_note(format_note(note), [other.verifier().__class__.from_vkey(SPEC_VKEY)])
    forged = note.signatures[1]
    bad = NoteSignature(forged.name, forged.key_id, bytes(64))
    with pytest.raises(NoteVerificationError, match="does not verify"):
        open_note(format_note(add_cosignatures(sign_note(GO_TEXT, [other]), [bad])), [verifier])


@pytest.mark.parametrize(
    "data",
    [
        "no blank line\n" + GO_SIG,
        GO_TEXT + "\n" + GO_SIG.rstrip("\n"),  # no final newline
        GO_TEXT + "\n" + GO_SIG.replace(EM, "-"),  # not an em dash
        GO_TEXT + "\n" + GO_SIG.replace("PeterNeumann", "Peter+Neumann"),
        GO_TEXT + "\n" + GO_SIG.replace("AM=", "AN="),  # non-canonical base64 (padding bits)
        GO_TEXT.replace("answer", "ans\x07wer") + "\n" + GO_SIG,  # control character
        GO_TEXT + "\n" + f"{EM} PeterNeumann AAAA\n",  # shorter than a key ID + signature
    ],
)
def test_malformed_notes_are_rejected(data: str) -> None:
    with pytest.raises(InvalidNoteError):
        parse_note(data.encode())


def test_cosignature_message_and_spec_example_line() -> None:
    assert cosigned_message(SPEC_CHECKPOINT_TEXT, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )  # the signed message printed in c2sp.org/tlog-cosignature
    note = parse_note((SPEC_CHECKPOINT_TEXT + "\n" + SPEC_COSIGNATURE).encode())
    (line,) = note.signatures
    assert line.name == "witness.example.com/w1"
    assert len(line.signature) == 8 + 64
    # the timestamp the spec's example message uses is the one inside its example line
    assert int.from_bytes(line.signature[:8], "big") == 1679315147
    checkpoint = Checkpoint.parse(note.text)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)


def test_cosignature_round_trip_uses_type_4_key_ids() -> None:
    key = Ed25519PrivateKey.generate()
    signer = CosignatureSigner("w.example/1", key, clock=lambda: 1700000000)
    plain = Ed25519NoteSigner("w.example/1", key)
    assert signer.key_id != plain.key_id  # same key, different type byte -> different ID
    verifier = signer.verifier()
    assert verifier.sig_type == COSIGNATURE_V1
    assert NoteVerifier.from_vkey(verifier.vkey) == verifier
    signature = signer.sign(SPEC_CHECKPOINT_TEXT)
    assert verifier.verify(SPEC_CHECKPOINT_TEXT, signature)
    assert verifier.timestamp(signature) == 1700000000
    assert not verifier.verify(SPEC_CHECKPOINT_TEXT.replace("20852163", "20852164"), signature)
    assert not plain.verifier().verify(SPEC_CHECKPOINT_TEXT, signature)


@pytest.mark.parametrize(
    "text",
    [
        "origin\n01\n" + base64.b64encode(bytes(32)).decode() + "\n",  # leading zero
        "origin\n1\n" + base64.b64encode(bytes(31)).decode() + "\n",  # short hash
        "origin\n1\n",  # two lines
        "origin\n0\n" + base64.b64encode(bytes(32)).decode() + "\n",  # size 0, not empty root
        "origin\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\n",  # empty extension line
        "origin\n-1\n" + base64.b64encode(bytes(32)).decode() + "\n",
    ],
)
def test_malformed_checkpoints_are_rejected(text: str) -> None:
    with pytest.raises(InvalidNoteError):
        Checkpoint.parse(text)


def test_checkpoint_text_round_trip() -> None:
    checkpoint = Checkpoint("log.example/x", 0, EMPTY_ROOT)
    assert checkpoint.text() == ("log.example/x\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
    assert Checkpoint.parse(checkpoint.text()) == checkpoint
    ext = Checkpoint("log.example/x", 3, bytes(range(32)), ("ext one",))
    assert Checkpoint.parse(ext.text()) == ext


class _Log:
    """A tiny log for witness tests: a tree, its key, and signed checkpoints."""

    def __init__(self, origin: str = "log.example/test") -> None:
        self.tree = MerkleTree()
        self.signer = Ed25519NoteSigner(origin, Ed25519PrivateKey.generate())

    def grow(self, count: int) -> None:
        self.tree.extend(f"entry {self.tree.size + i}".encode() for i in range(count))

    def checkpoint(self, size: int | None = None) -> bytes:
        size = self.tree.size if size is None else size
        cp = Checkpoint(self.signer.name, size, self.tree.root(size))
        return format_note(sign_checkpoint(cp, self.signer))


def _witness(log: _Log, name: str = "w.example/1") -> Witness:
    return Witness(name, Ed25519PrivateKey.generate(), log.signer.verifier(), clock=lambda: 17)


def test_witness_cosigns_consistent_checkpoints_and_policy_counts_quorum() -> None:
    log = _Log()
    witnesses = [_witness(log, f"w.example/{i}") for i in range(3)]
    policy = TrustPolicy(log.signer.verifier(), tuple(w.verifier for w in witnesses), quorum=2)
    assert TrustPolicy.from_json(policy.to_json()) == policy
    log.grow(5)
    first = log.checkpoint()
    sigs = [w.add_checkpoint(0, [], first) for w in witnesses[:2]]
    log.grow(6)
    second = log.checkpoint()
    proof = log.tree.consistency_proof(5, 11)
    sigs2 = [w.add_checkpoint(5, proof, second) for w in witnesses[:2]]
    assert witnesses[0].latest() == Checkpoint.parse(parse_note(second).text)
    cosigned = add_cosignatures(parse_note(second), sigs2[:1])
    with pytest.raises(NoteVerificationError, match="1 cosignatures, 2 needed"):
        open_checkpoint(format_note(cosigned), policy)
    assert not open_checkpoint(format_note(cosigned), policy, require_final=False).final
    final = open_checkpoint(format_note(add_cosignatures(cosigned, sigs2)), policy)
    assert final.final
    assert final.cosigners == ("w.example/0", "w.example/1")
    assert final.checkpoint.size == 11
    assert sigs[0] != sigs2[0]


def test_witness_refuses_a_forked_log_and_keeps_evidence() -> None:
    log = _Log()
    witness = _witness(log)
    log.grow(4)
    witness.add_checkpoint(0, [], log.checkpoint())
    # the operator rewrites history: same key, a different tree that is not an extension
    fork = _Log()
    fork.signer = log.signer
    fork.grow(3)
    fork.tree.append(b"rewritten entry 3")
    fork.grow(4)
    forked = fork.checkpoint()
    with pytest.raises(SplitViewError) as info:
        witness.add_checkpoint(4, fork.tree.consistency_proof(4, 8), forked)
    assert info.value.status == 422
    assert info.value.offending == forked
    assert Checkpoint.parse(parse_note(info.value.previous).text).size == 4
    # same size, different root: a split view
    with pytest.raises(SplitViewError, match="two different roots"):
        witness.add_checkpoint(4, [], fork.checkpoint(4))
    assert witness.latest() is not None
    assert witness.latest().size == 4


def test_witness_refusals_map_to_tlog_witness_statuses() -> None:
    log = _Log()
    witness = _witness(log)
    log.grow(3)
    witness.add_checkpoint(0, [], log.checkpoint())
    log.grow(2)
    with pytest.raises(StaleOldSizeError) as stale:
        witness.add_checkpoint(2, log.tree.consistency_proof(2, 5), log.checkpoint())
    assert stale.value.status == 409
    assert stale.value.expected == 3
    with pytest.raises(WitnessRefusedError) as bad:
        witness.add_checkpoint(6, [], log.checkpoint())
    assert bad.value.status == 400
    stranger = _Log("log.example/test")  # right origin, wrong key
    stranger.grow(5)
    with pytest.raises(WitnessRefusedError) as forbidden:
        witness.add_checkpoint(3, stranger.tree.consistency_proof(3, 5), stranger.checkpoint())
    assert forbidden.value.status == 403
    assert witness.latest().size == 3  # type: ignore[union-attr]


def test_add_checkpoint_request_wire_format() -> None:
    log = _Log()
    log.grow(9)
    request = AddCheckpointRequest(4, tuple(log.tree.consistency_proof(4, 9)), log.checkpoint())
    body = request.to_bytes()
    assert body.startswith(b"old 4\n")
    assert AddCheckpointRequest.parse(body) == request
    assert AddCheckpointRequest.parse(b"old 0\n\n" + log.checkpoint()).proof == ()
    for bad in (b"old 04\n\n", b"new 4\n\n", b"old 4\nnot base64!\n\n", b"old 4\n"):
        with pytest.raises(InvalidNoteError):
            AddCheckpointRequest.parse(bad + log.checkpoint())
