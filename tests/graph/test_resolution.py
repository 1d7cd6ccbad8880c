"""Company-name parsing and counterparty resolution on hand-made mentions."""

from __future__ import annotations

import pandas as pd
import pytest

from flowbureau.graph.names import parse_company_name
from flowbureau.graph.resolution import external_id, match_names, resolve_mentions

A, B, C = "91320111MAHKB52W4E", "91370113MA19D50K51", "91320585MAHBLFK27H"
_CITIES = ("南京", "济南", "苏州", "杭州", "广州", "成都")
_CHARS = "华鼎恒宏金瑞永泰丰盛达利"
_TRADES = ("机械", "贸易", "物流", "食品", "建材")
# 210 other firms with distinct cores (as in a real registry), so u is learnt from real pairs
_OTHERS = [
    _CITIES[i % 6]
    + _CHARS[i % 12]
    + _CHARS[(i // 12 + i % 12 + 1) % 12]
    + _TRADES[i // 42]
    + "有限公司"
    for i in range(210)
]
REFERENCES = pd.DataFrame(
    {
        "enterprise_id": [A, A, B, B, C] + [f"other{i}" for i in range(len(_OTHERS))],
        "name": [
            "南京振源水产有限公司",
            "Nanjing Zhenyuan Aquatic Products Co., Ltd.",
            "济南越晟百货有限公司",
            "Jinan Yuesheng Department Store Co., Ltd.",
            "苏州旭通宾馆有限公司",
            *_OTHERS,
        ],
    }
)


@pytest.mark.parametrize(
    ("name", "core", "region", "legal"),
    [
        ("南京振源水产有限公司", "振源水产", "南京", "有限公司"),
        ("江苏省南京市振源水产股份有限公司", "振源水产", "南京", "股份有限公司"),
        ("华为技术（深圳）有限公司", "华为技术", "深圳", "有限公司"),
        ("振源水产有限责任公司", "振源水产", None, "有限公司"),
        (
            "Nanjing Zhenyuan Aquatic Products Co., Ltd.",
            "zhenyuanaquaticproducts",
            "nanjing",
            "co ltd",
        ),
        ("国家税务总局建德市税务局", "国家税务总局建德市税务局", None, None),
    ],
)
def test_company_names_are_taken_apart(
    name: str, core: str, region: str | None, legal: str | None
) -> None:
    parsed = parse_company_name(name)
    assert parsed is not None
    assert (parsed.core, parsed.region, parsed.legal_form) == (core, region, legal)


def test_empty_name_is_none() -> None:
    assert parse_company_name("  ") is None
    assert parse_company_name(None) is None


def test_name_model_links_variants_and_refuses_other_firms() -> None:
    names = pd.Series(
        {
            10: "江苏省南京市振源水产有限公司",  # province and 市 added
            11: "JINAN YUESHENG DEPARTMENT STORE CO LTD",  # romanised, shouted
            12: "苏州旭通宾馆有限责任公司",  # legal form spelt out (normalised to 有限公司)
            13: "南京华通机械有限公司",  # a firm not in the registry, same city and trade
        }
    )
    matched = match_names(names, REFERENCES)
    assert matched.loc[10, "enterprise_id"] == A
    assert matched.loc[11, "enterprise_id"] == B
    assert matched.loc[12, "enterprise_id"] == C
    assert 13 not in matched.index
    assert (matched["probability"] >= 0.9).all()


def test_resolution_order_account_name_then_outside() -> None:
    mentions = pd.DataFrame(
        {
            "account": ["acctA", "acctA", "acctX", "acctX", None, None, "acctY", None],
            "key": [
                "南京振源水产有限公司",
                None,
                "济南越晟百货有限公司",  # a member's account outside the consortium
                None,
                "苏州旭通宾馆有限公司",  # no account, exact name
                "某某商贸有限公司",  # no account, unknown name printed with acctY
                "某某商贸有限公司",
                "无名小店",  # nowhere else
            ],
            "name": [
                "南京振源水产有限公司",
                None,
                "济南越晟百货有限公司",
                None,
                "苏州旭通宾馆有限公司",
                "某某商贸有限公司",
                "某某商贸有限公司",
                "无名小店",
            ],
            "entries": [1] * 8,
        }
    )
    out = resolve_mentions(mentions, {"acctA": A}, REFERENCES)
    assert list(out["counterparty_id"]) == [
        A,
        A,
        B,
        B,
        C,
        external_id("acctY", None),
        external_id("acctY", None),
        external_id(None, "无名小店"),
    ]
    assert list(out["method"]) == [
        "account",
        "account",
        "name_exact",
        "name_account",
        "name_exact",
        "name_account",
        "external",
        "external",
    ]


def test_external_ids_are_stable_and_distinct() -> None:
    assert external_id("abc", "x") == external_id("abc", "y")
    assert external_id("abc", None) != external_id(None, "abc")
    assert external_id(None, "abc").startswith("ext:")
