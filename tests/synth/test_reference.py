"""Reference tables and identifier generation of the synthetic consortium generator."""

from __future__ import annotations

import re
from importlib import resources

import numpy as np
import pytest
from stdnum.cn import uscc

from flowbureau.synth import codes
from flowbureau.synth.reference import (
    BANK_CATALOG,
    BRAND_CHARS,
    GIVEN_CHARS,
    INDUSTRY_PROFILES,
    PINYIN,
    PREFECTURES,
    SURNAMES,
    districts,
    gbt4754,
)
from flowbureau.synth.world import company_names, person_names


def test_gbt4754_has_every_section_and_division() -> None:
    table = gbt4754()
    assert list(table.sections) == [chr(c) for c in range(ord("A"), ord("T") + 1)]
    assert list(table.divisions) == [f"{i:02d}" for i in range(1, 98)]
    assert all(d.section in table.sections for d in table.divisions.values())
    # spot checks against the published standard
    assert table.sections["C"].name_zh == "制造业"
    assert table.divisions["36"].name_zh == "汽车制造业"
    assert table.divisions["65"].section == "I"
    assert table.divisions["79"].name_zh == "土地管理业"
    assert table.divisions["97"].section == "T"
    counts = {s: sum(d.section == s for d in table.divisions.values()) for s in table.sections}
    assert counts["C"] == 31
    assert counts["B"] == 7
    assert counts["G"] == 8


def test_industry_profiles_are_consistent() -> None:
    divisions = gbt4754().divisions
    for code, profile in INDUSTRY_PROFILES.items():
        assert code in divisions
        assert 0 < profile.cogs + profile.payroll + profile.utilities < 1
        assert profile.words
        for supplier, weight in profile.suppliers:
            assert supplier in INDUSTRY_PROFILES, (code, supplier)
            assert weight > 0
    assert not {"16", "66", "91", "97"} & set(INDUSTRY_PROFILES)


def _loc_names() -> dict[str, str]:
    text = resources.files("stdnum.cn").joinpath("loc.dat").read_text("utf-8")
    names: dict[str, str] = {}
    province = ""
    for line in text.splitlines():
        head = re.match(r"^(\d{2}) province=", line)
        if head:
            province = head.group(1)
        match = re.match(r'^\s+(\d{4}) county="(?:\[[^\]]*\])?(.*)"$', line)
        if match:
            names[province + match.group(1)] = match.group(2)
    return names


def test_prefectures_and_districts_are_real_gbt2260_codes() -> None:
    names = _loc_names()
    for pref in PREFECTURES:
        assert pref.code in names, pref
        if not pref.municipality:
            assert names[pref.code].endswith(pref.city + "市")
        for code, district in districts()[pref.code]:
            assert code[:4] == pref.code[:4]
            if district:
                assert names[code].endswith(district)  # current name last
                assert not re.search(r"-\d{4}\][^,]*$", names[code])  # not abolished
    assert len(districts()["320500"]) >= 5  # 苏州 has many districts


def test_every_generated_name_has_pinyin() -> None:
    assert all(c in PINYIN for c in BRAND_CHARS + GIVEN_CHARS)
    assert all(s in PINYIN for s, _ in SURNAMES)
    rng = np.random.default_rng(1)
    names, pinyin = person_names(rng, 50)
    assert all(2 <= len(n) <= 3 for n in names)
    assert all(re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", p) for p in pinyin)


def test_company_names_are_unique_and_well_formed() -> None:
    rng = np.random.default_rng(2)
    n = 3000
    prefecture = np.zeros(n, dtype=np.int64)  # all in one city: many collisions to resolve
    division = np.full(n, list(INDUSTRY_PROFILES).index("51"))
    names, english = company_names(rng, prefecture, division, np.zeros(n, dtype=bool), set())
    assert len(set(names)) == n
    assert all(name.startswith("北京") and name.endswith("有限公司") for name in names)
    assert all(re.fullmatch(r"[A-Za-z' ]+ Co\., Ltd\.", e) for e in english)


def test_org_code_check_digit_matches_gb11714_vector() -> None:
    # 91110000600037341L is the example code in python-stdnum's documentation:
    # its organisation code is 60003734-1.
    assert codes.org_code_check("60003734") == "1"
    assert codes.credit_code("110000", "60003734") == "91110000600037341L"


def test_credit_codes_validate_and_are_unique() -> None:
    rng = np.random.default_rng(3)
    after = rng.random(2000) < 0.5
    bodies = codes.org_bodies(rng, after)
    assert len(set(bodies)) == len(bodies)
    assert all(b.startswith("MA") == flag for b, flag in zip(bodies, after, strict=True))
    for body in bodies[:300]:
        code = codes.credit_code("320505", body)
        assert uscc.is_valid(code)
        assert code[8:16] == body
        assert code[16] == codes.org_code_check(body)


@pytest.mark.parametrize(("digits", "check"), [("7992739871", "3"), ("4111111111111111"[:-1], "1")])
def test_luhn_digit(digits: str, check: str) -> None:
    assert codes.luhn_digit(digits) == check


def test_account_numbers_have_the_bank_length_and_pass_luhn() -> None:
    rng = np.random.default_rng(4)
    for bank in BANK_CATALOG[:5]:
        numbers = codes.account_numbers(rng, 500, bank.account_digits, "62")
        assert len(set(numbers)) == 500
        assert all(len(n) == bank.account_digits and n.isdigit() for n in numbers)
        assert all(codes.luhn_digit(n[:-1]) == n[-1] for n in numbers)
        assert 16 <= bank.account_digits <= 19
