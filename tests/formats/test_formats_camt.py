"""camt.052/053/054 reader: crafted documents, good and malformed."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from flowbureau.errors import ParseError
from flowbureau.formats import BOOKED, read_file, reconcile

NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.{version}"

ENTRY = """
      <Ntry>
        <Amt Ccy="{ccy}">{amount}</Amt>
        <CdtDbtInd>{side}</CdtDbtInd>
        {status}
        <BookgDt><DtTm>2024-01-31T10:15:30.123456789+08:00</DtTm></BookgDt>
        <ValDt><Dt>2024-02-01</Dt></ValDt>
        <AcctSvcrRef>REF-{n}</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls>{details}</NtryDtls>
      </Ntry>"""

DETAILS = """
          <TxDtls>
            <Refs><EndToEndId>E2E-{n}</EndToEndId><TxId>TX-{n}</TxId></Refs>
            <RltdPties>
              <Dbtr>{debtor}</Dbtr>
              <DbtrAcct><Id><IBAN>DE89370400440532013000</IBAN></Id></DbtrAcct>
              <Cdtr><Nm>Hangzhou Example Tech</Nm></Cdtr>
              <CdtrAcct><Id><Othr><Id>6222000012345678</Id></Othr></Id></CdtrAcct>
            </RltdPties>
            <RltdAgts><DbtrAgt><FinInstnId><BIC>COBADEFFXXX</BIC></FinInstnId></DbtrAgt>
              <CdtrAgt><FinInstnId><BICFI>ICBKCNBJ</BICFI></FinInstnId></CdtrAgt></RltdAgts>
            <RmtInf><Ustrd>Invoice 1001</Ustrd><Ustrd>and 1002</Ustrd>
              <Strd><CdtrRefInf><Ref>RF18539007547034</Ref></CdtrRefInf></Strd></RmtInf>
          </TxDtls>"""


def document(
    entries: str, *, version: str = "02", opening: str = "1000.00", closing: str = "1128.50"
) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="{NS.format(version=version)}">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>M1</MsgId><CreDtTm>2024-01-31T23:00:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>STMT-1</Id>
      <FrToDt><FrDtTm>2024-01-31T00:00:00</FrDtTm><ToDtTm>2024-01-31T23:59:59</ToDtTm></FrToDt>
      <Acct>
        <Id><Othr><Id>6222000012345678</Id></Othr></Id>
        <Ccy>EUR</Ccy>
        <Ownr><Nm>Hangzhou Example Tech</Nm>
          <Id><OrgId><Othr><Id>91350100M000100Y43</Id></Othr></OrgId></Id></Ownr>
        <Svcr><FinInstnId><BIC>ICBKCNBJ</BIC></FinInstnId></Svcr>
      </Acct>
      <Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{opening}</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-01-30</Dt></Dt></Bal>
      <Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{closing}</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-01-31</Dt></Dt></Bal>{entries}
    </Stmt>
  </BkToCstmrStmt>
</Document>
"""


def entry(
    n: int,
    amount: str,
    side: str = "CRDT",
    *,
    status: str = "BOOK",
    version: str = "02",
    details: int = 1,
    ccy: str = "EUR",
    debtor: str = "<Nm>Muster GmbH</Nm>",
) -> str:
    sts = f"<Sts><Cd>{status}</Cd></Sts>" if version >= "08" else f"<Sts>{status}</Sts>"
    return ENTRY.format(
        ccy=ccy,
        amount=amount,
        side=side,
        status=sts,
        n=n,
        details="".join(DETAILS.format(n=f"{n}.{k}", debtor=debtor) for k in range(details)),
    )


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "camt.xml"
    path.write_text(text, "utf-8")
    return path


def test_statement_facts_entries_and_counterparties(tmp_path: Path) -> None:
    text = document(
        entry(1, "250.00") + entry(2, "121.50", "DBIT") + entry(3, "5.00", status="PDNG")
    )
    result = read_file(_write(tmp_path, text))
    assert result.format == "camt"
    (statement,) = result.statements
    facts = statement.facts
    assert facts.account_number == "6222000012345678"
    assert facts.owner_name == "Hangzhou Example Tech"
    assert facts.owner_id == "91350100M000100Y43"
    assert facts.servicer == "ICBKCNBJ"
    assert (facts.opening_balance_minor, facts.closing_balance_minor) == (100000, 112850)
    assert (facts.period_start, facts.period_end) == (date(2024, 1, 30), date(2024, 1, 31))
    assert reconcile(statement) == 0
    credit, debit = statement.entries.to_pylist()
    assert credit["amount_minor"] == 25000
    assert debit["amount_minor"] == -12150
    assert credit["booked_local"] == datetime(2024, 1, 31, 10, 15, 30, 123456)
    assert credit["booked_offset_minutes"] == 480
    assert credit["value_date"] == date(2024, 2, 1)
    assert credit["counterparty_name"] == "Muster GmbH"
    assert credit["counterparty_account"] == "DE89370400440532013000"
    assert credit["counterparty_bank"] == "COBADEFFXXX"
    assert debit["counterparty_name"] == "Hangzhou Example Tech"
    assert debit["counterparty_account"] == "6222000012345678"
    assert debit["counterparty_bank"] == "ICBKCNBJ"
    assert credit["reference"] == "REF-1"
    assert credit["end_to_end_id"] == "E2E-1.0"
    assert credit["tx_code"] == "PMNT/RCDT/ESCT"
    assert credit["description"] == "Invoice 1001 | and 1002 | creditor reference RF18539007547034"
    assert credit["location"] == "/Document/BkToCstmrStmt/Stmt[1]/Ntry[1]"
    (pending,) = statement.pending.to_pylist()
    assert pending["status"] == "PDNG"
    assert pending["location"].endswith("Ntry[3]")


def test_version_8_status_code_and_party_wrapper(tmp_path: Path) -> None:
    text = document(
        entry(1, "128.50", version="08", debtor="<Pty><Nm>Wrapped Party</Nm></Pty>"), version="08"
    )
    (statement,) = read_file(_write(tmp_path, text)).statements
    (row,) = statement.entries.to_pylist()
    assert row["status"] == BOOKED
    assert row["counterparty_name"] == "Wrapped Party"
    assert reconcile(statement) == 0


def test_batch_entry_is_one_record_with_the_count(tmp_path: Path) -> None:
    text = document(entry(1, "128.50", details=3))
    (statement,) = read_file(_write(tmp_path, text)).statements
    (row,) = statement.entries.to_pylist()
    assert row["amount_minor"] == 12850
    assert row["description"].startswith("batch of 3 transactions")
    assert row["raw_text"].count("<TxDtls>") == 3


def test_too_many_decimals_is_invalid_and_kept(tmp_path: Path) -> None:
    text = document(entry(1, "128.505") + entry(2, "0.00"), closing="1000.00")
    (statement,) = read_file(_write(tmp_path, text)).statements
    bad, zero = statement.entries.to_pylist()
    assert bad["status"].startswith("INVALID:")
    assert "more than 2 decimals" in bad["status"]
    assert bad["amount_minor"] == 0
    assert "128.505" in bad["raw_text"]
    assert zero["status"] == BOOKED
    assert zero["amount_minor"] == 0
    assert reconcile(statement) == 0


def test_balance_in_another_currency_is_not_used(tmp_path: Path) -> None:
    text = document(entry(1, "128.50")).replace('<Amt Ccy="EUR">1128.50', '<Amt Ccy="USD">1128.50')
    (statement,) = read_file(_write(tmp_path, text)).statements
    assert statement.facts.closing_balance_minor is None
    assert reconcile(statement) is None
    assert any("CLBD balance is in USD" in w for w in statement.warnings)


@pytest.mark.parametrize(
    ("old", "new", "where", "field"),
    [
        ('<Amt Ccy="EUR">250.00', '<Amt Ccy="EUR">2,50', "Ntry[1]", "Amt"),
        ('<Amt Ccy="EUR">250.00', '<Amt Ccy="XXY">250.00', "Ntry[1]", "Amt/@Ccy"),
        (
            "<CdtDbtInd>CRDT</CdtDbtInd>\n        <Sts>",
            "<CdtDbtInd>CR</CdtDbtInd>\n        <Sts>",
            "Ntry[1]",
            "CdtDbtInd",
        ),
        ("2024-01-31T10:15:30.123456789+08:00", "2024-13-31T10:15:30", "Ntry[1]", "BookgDt"),
        ("<Sts>BOOK</Sts>", "", "Ntry[1]", "Sts"),
    ],
)
def test_malformed_entries_name_the_xml_path(
    tmp_path: Path, old: str, new: str, where: str, field: str
) -> None:
    text = document(entry(1, "250.00"), closing="1250.00")
    assert old in text
    with pytest.raises(ParseError) as caught:
        read_file(_write(tmp_path, text.replace(old, new, 1)))
    assert caught.value.location.path == f"/Document/BkToCstmrStmt/Stmt[1]/{where}"
    assert caught.value.field == field


def test_not_well_formed_xml_names_the_line(tmp_path: Path) -> None:
    text = document(entry(1, "250.00")).replace("</Ntry>", "</Nt>", 1)
    with pytest.raises(ParseError) as caught:
        read_file(_write(tmp_path, text), format="camt")
    assert caught.value.line is not None
    assert caught.value.line > 10


def test_entities_are_not_expanded(tmp_path: Path) -> None:
    text = (
        document(entry(1, "250.00"), closing="1250.00")
        .replace(
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
        )
        .replace("<Ustrd>Invoice 1001</Ustrd>", "<Ustrd>&e;</Ustrd>")
    )
    (statement,) = read_file(_write(tmp_path, text)).statements
    assert "root:" not in (statement.entries.column("description")[0].as_py() or "")


def test_notification_has_entries_and_no_balances(tmp_path: Path) -> None:
    body = entry(1, "10.00")
    text = f"""<?xml version="1.0"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.04"><BkToCstmrDbtCdtNtfctn>
<GrpHdr><MsgId>N</MsgId><CreDtTm>2024-01-31T12:00:00Z</CreDtTm></GrpHdr>
<Ntfctn><Id>N1</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>{body}</Ntfctn>
</BkToCstmrDbtCdtNtfctn></Document>"""
    (statement,) = read_file(_write(tmp_path, text)).statements
    assert statement.facts.account_number == "DE89370400440532013000"
    assert statement.facts.currency == "EUR"
    assert reconcile(statement) is None
    assert statement.entries.column("location").to_pylist() == [
        "/Document/BkToCstmrDbtCdtNtfctn/Ntfctn[1]/Ntry[1]"
    ]
