"""Real processes: one platform and four bank nodes talking HTTP on loopback.

The founding ceremony runs in this process on each party's own data directory (member
documents, a genesis the founders approve, entry 0 appended by the platform); then
``flowbureau node serve`` x 4 and ``flowbureau platform serve`` run as subprocesses. Every bank
contributes statement files through its node; with one node stopped the 3-of-4 quorum still
finalises checkpoints; an operator presenting a forked log to a witness is refused, and the
witness records the evidence.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowbureau.config import Settings
from flowbureau.errors import BundleError
from flowbureau.ledger.checkpoint import Checkpoint, TrustPolicy, open_checkpoint, sign_checkpoint
from flowbureau.ledger.consortium import member_keys
from flowbureau.ledger.embedded import keystore, open_ledger, warehouse_rows
from flowbureau.ledger.membership import Member, Role, witness_name
from flowbureau.ledger.merkle import MerkleTree
from flowbureau.ledger.nodes import HttpWitnessClient, PlatformClient, trust_genesis
from flowbureau.ledger.note import Ed25519NoteSigner, format_note
from flowbureau.ledger.receipts import Receipt
from flowbureau.ledger.witness import SplitViewError
from statement_files import write_statement

BANKS = ("B1", "B2", "B3", "B4")
ACCOUNTS = {
    "B1": "6222000011112001",
    "B2": "6222000011112002",
    "B3": "6222000011112003",
    "B4": "6222000011112004",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _statement(path: Path, bank: str, day: int, amounts: list[int]) -> Path:
    balance = 100_000
    rows = []
    for n, amount in enumerate(amounts):
        balance -= amount
        rows.append(
            (
                f"2024-02-{day + n:02d}",
                "10:00:00",
                f"{amount}.00",
                "",
                f"{balance}.00",
                "某供应商有限公司",
                "6200111122223333",
                "支付货款",
                f"{bank}-{day}-{n}",
            )
        )
    return write_statement(path, ACCOUNTS[bank], f"{bank}贸易有限公司", rows)


@dataclass
class Cluster:
    root: Path
    platform_url: str = ""
    node_urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def settings(self, name: str) -> Settings:
        return Settings(env="test", data_dir=self.root / name)

    def env(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUREAU_")}
        env.update(FLOWBUREAU_ENV="test", FLOWBUREAU_DATA_DIR=str(self.root / name))
        return env

    def start(self, name: str, args: list[str], probe: str) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-c", "from flowbureau.cli import main; main()", *args],
            env=self.env(name),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            assert self.processes[name].poll() is None, (self.root / f"{name}.log").read_text()
            try:
                httpx.get(probe, timeout=2)
                return
            except httpx.HTTPError:
                assert time.monotonic() < deadline, f"{name} did not start"
                time.sleep(0.2)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def contribute(self, bank: str, path: Path) -> dict[str, Any]:
        response = httpx.post(
            f"{self.node_urls[bank]}/v1/contributions", json={"paths": [str(path)]}, timeout=300
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    found = Cluster(tmp_path)
    # the founding ceremony, each party on its own data directory
    members = [
        Member(b, f"Bank {b}", Role.BANK, member_keys(keystore(found.settings(b)).bank(b)))
        for b in BANKS
    ]
    ledger = open_ledger(found.settings("platform"))
    genesis = ledger.draft_genesis(members, quorum=3)
    approvals = []
    for bank in BANKS:
        trust_genesis(found.settings(bank), genesis)
        approvals.append(genesis.approve(bank, keystore(found.settings(bank)).bank(bank).signing))
    ledger.found_with(genesis, approvals)
    try:
        found.platform_url = f"http://127.0.0.1:{_free_port()}"
        for bank in BANKS:
            port = _free_port()
            found.node_urls[bank] = f"http://127.0.0.1:{port}"
            found.start(
                bank,
                [
                    "node",
                    "serve",
                    "--bank",
                    bank,
                    "--platform",
                    found.platform_url,
                    "--port",
                    str(port),
                ],
                probe=f"{found.node_urls[bank]}/witness/evidence",
            )
        witnesses = [a for b in BANKS for a in ("--witness", f"{b}={found.node_urls[b]}")]
        port = int(found.platform_url.rsplit(":", 1)[1])
        found.start(
            "platform",
            ["platform", "serve", "--port", str(port), *witnesses],
            probe=f"{found.platform_url}/v1/ledger/keys",
        )
        yield found
    finally:
        for name in list(found.processes):
            found.stop(name)


def _policy(cluster: Cluster) -> TrustPolicy:
    return TrustPolicy.from_json(httpx.get(f"{cluster.platform_url}/v1/ledger/keys").json())


@pytest.mark.slow
def test_four_banks_contribute_quorum_holds_with_one_offline_and_a_fork_is_refused(
    cluster: Cluster,
) -> None:
    policy = _policy(cluster)
    assert policy.quorum == 3
    assert len(policy.witnesses) == 4
    # the genesis checkpoint was cosigned once the witnesses came up
    genesis_note = httpx.get(f"{cluster.platform_url}/v1/ledger/checkpoint").text
    assert len(open_checkpoint(genesis_note, policy).cosigners) == 4

    # every bank contributes through its own node
    for n, bank in enumerate(BANKS):
        path = _statement(cluster.root / f"{bank}-in" / "feb.csv", bank, 1 + n, [100, 250, 75])
        result = cluster.contribute(bank, path)
        assert result["ingest"]["new_records"] == 3
        (receipt,) = result["receipts"]
        assert receipt["final"] is True
        checked = Receipt.from_json(receipt).verify(policy)
        assert len(checked.cosigners) == 4
    kept = httpx.get(f"{cluster.node_urls['B2']}/v1/receipts").json()
    assert [r["seq"] for r in kept] == [1]

    # one bank offline: 3 of 4 witnesses still make checkpoints final
    cluster.stop("B4")
    path = _statement(cluster.root / "B1-in" / "mar.csv", "B1", 10, [40, 60])
    (receipt,) = cluster.contribute("B1", path)["receipts"]
    assert receipt["final"] is True
    checked = Receipt.from_json(receipt).verify(policy)
    assert sorted(checked.cosigners) == [witness_name(policy.origin, b) for b in ("B1", "B2", "B3")]

    # a malformed bundle is refused by the platform with nothing stored
    size = checked.checkpoint.size
    with pytest.raises(BundleError):
        PlatformClient(cluster.platform_url).submit(b"FLOWBUREAU-BUNDLE/1\n" + b"\x00" * 8)
    assert (
        open_checkpoint(
            httpx.get(f"{cluster.platform_url}/v1/ledger/checkpoint").text, policy
        ).checkpoint.size
        == size
    )

    # the operator presents a forked log to B2's witness: refused, evidence recorded
    platform = cluster.settings("platform")
    store_ledger = open_ledger(platform)
    entries = list(store_ledger.store.entries())
    forked = [*entries[:-1], entries[-1].replace(b'"seq":2', b'"seq":3')]
    tree = MerkleTree()
    tree.extend(forked)
    signer = Ed25519NoteSigner(policy.origin, keystore(platform).platform().log)
    note = format_note(sign_checkpoint(Checkpoint(policy.origin, size, tree.root()), signer))
    witness = HttpWitnessClient(witness_name(policy.origin, "B2"), cluster.node_urls["B2"])
    with pytest.raises(SplitViewError) as refusal:
        witness.add_checkpoint(size, [], note)
    previous = open_checkpoint(refusal.value.previous, policy, require_final=False)
    offending = open_checkpoint(refusal.value.offending, policy, require_final=False)
    assert previous.checkpoint.size == offending.checkpoint.size == size
    assert previous.checkpoint.root_hash != offending.checkpoint.root_hash
    evidence = httpx.get(f"{cluster.node_urls['B2']}/witness/evidence").json()
    assert len(evidence) == 1
    assert evidence[0]["offending"] == note.decode()
    # the honest log is untouched and still verifies end to end
    records, statements = warehouse_rows(platform)
    report = store_ledger.verify(records=records, statements=statements)
    assert report.ok, report.problems
    assert report.records == 14
