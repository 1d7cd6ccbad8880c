"""Chinese (and romanised) company names taken apart for record linkage.

Rules:
- The matching key is :func:`flowbureau.cleaning.normalise.normalise_name` (NFKC, case-fold,
  no whitespace or punctuation, unified legal forms): the same key the pipeline stores as
  ``counterparty_name_norm``, so a key computed here equals the stored one.
- A Chinese name is ``[region][brand + industry][legal form]``, e.g. 深圳市 瑞合机械 有限公司.
  Leading administrative-division names are stripped (with or without their suffix:
  江苏省南京市 / 南京市 / 南京), taken from the GB/T 2260 table that python-stdnum ships
  (``stdnum/cn/loc.dat``, every current and historical name); the last (most specific) one
  stripped, without its suffix, is the ``region``. A bracketed region before the legal
  form (华为技术(深圳)有限公司) is stripped too.
  The trailing legal form (股份有限公司, 有限公司, 有限合伙, ...) is ``legal_form``; what is
  left is the ``core`` (字号 + 行业), the part that identifies the firm.
- A romanised name (no CJK character) drops legal-form words (Co., Ltd., Limited, Company,
  Corp., Inc., LLC, PLC) into ``legal_form`` ("ltd" / "inc" / ...); its first word is the
  ``region`` only when it is the pinyin of a province or large city listed in
  :data:`PINYIN_REGIONS` (the GB/T 2260 table has no pinyin); the rest is the ``core``.
- Nothing here guesses: a name that does not follow the pattern keeps its whole key as core
  and empty region / legal form (``None``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

from flowbureau.cleaning.normalise import normalise_name

__all__ = ["PINYIN_REGIONS", "CompanyName", "parse_company_name", "region_names"]

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_ZH_LEGAL_FORMS = (
    "股份有限公司",
    "有限公司",
    "有限合伙",
    "普通合伙",
    "合伙企业",
    "个人独资企业",
    "集团公司",
    "公司",
)
_REGION_SUFFIX = re.compile(
    r"(特别行政区|壮族自治区|回族自治区|维吾尔自治区|自治区|自治州|自治县|地区|新区|省|市|区|县|盟|旗)$"
)
_LOC_NAME = re.compile(r'county="(.*)"|province="(.*)"')
_SPAN = re.compile(r"^\[[0-9]*-[0-9]*\]")
_LATIN_LEGAL = {
    "co": "co",
    "company": "co",
    "ltd": "ltd",
    "limited": "ltd",
    "corp": "corp",
    "corporation": "corp",
    "inc": "inc",
    "incorporated": "inc",
    "llc": "llc",
    "plc": "plc",
}
PINYIN_REGIONS: frozenset[str] = frozenset(
    {
        "beijing",
        "shanghai",
        "tianjin",
        "chongqing",
        "shijiazhuang",
        "taiyuan",
        "shenyang",
        "dalian",
        "changchun",
        "harbin",
        "nanjing",
        "wuxi",
        "changzhou",
        "suzhou",
        "hangzhou",
        "ningbo",
        "wenzhou",
        "jinhua",
        "hefei",
        "fuzhou",
        "xiamen",
        "quanzhou",
        "nanchang",
        "jinan",
        "qingdao",
        "yantai",
        "zhengzhou",
        "wuhan",
        "changsha",
        "guangzhou",
        "shenzhen",
        "foshan",
        "dongguan",
        "zhongshan",
        "nanning",
        "chengdu",
        "guiyang",
        "kunming",
        "xian",
        "xi'an",
        "lanzhou",
        "hohhot",
        "urumqi",
        "lhasa",
        "xining",
        "yinchuan",
        "haikou",
        "sanya",
        "zhuhai",
        "shantou",
        "huizhou",
        "jiangmen",
        "zhanjiang",
        "nantong",
        "yangzhou",
        "xuzhou",
        "shaoxing",
        "jiaxing",
        "taizhou",
        "huzhou",
        "weifang",
        "zibo",
        "linyi",
        "baotou",
        "tangshan",
        "baoding",
        "luoyang",
        "guangdong",
        "jiangsu",
        "zhejiang",
        "shandong",
        "henan",
        "hebei",
        "hubei",
        "hunan",
        "sichuan",
        "fujian",
        "anhui",
        "jiangxi",
        "liaoning",
        "jilin",
        "heilongjiang",
        "shanxi",
        "shaanxi",
        "gansu",
        "yunnan",
        "guizhou",
        "guangxi",
        "hainan",
        "qinghai",
        "ningxia",
        "xinjiang",
        "tibet",
        "xizang",
        "hongkong",
        "macau",
        "macao",
    }
)
"""Pinyin of provinces and large prefecture-level cities, the region word of romanised names."""


@dataclass(frozen=True, slots=True)
class CompanyName:
    """A company name taken apart: matching ``key``, ``core``, ``region``, ``legal_form``.

    ``script`` is ``zh`` when the name has a CJK character, else ``latin``.
    """

    key: str
    core: str
    region: str | None
    legal_form: str | None
    script: str


@cache
def region_names() -> frozenset[str]:
    """Every administrative-division name of GB/T 2260 (python-stdnum's table), with and
    without its suffix (短名 of at least two characters)."""
    text = resources.files("stdnum.cn").joinpath("loc.dat").read_text("utf-8")
    names: set[str] = set()
    for match in _LOC_NAME.finditer(text):
        value = match.group(1) or match.group(2) or ""
        for part in value.split(","):
            name = _SPAN.sub("", part).strip()
            if len(name) < 2 or name in {"市辖区", "县", "省直辖县级行政区划"}:
                continue
            names.add(name)
            short = _REGION_SUFFIX.sub("", name)
            if len(short) >= 2:
                names.add(short)
    return frozenset(names)


@cache
def _regions_by_length() -> tuple[tuple[int, frozenset[str]], ...]:
    by_length: dict[int, set[str]] = {}
    for name in region_names():
        by_length.setdefault(len(name), set()).add(name)
    return tuple((n, frozenset(v)) for n, v in sorted(by_length.items(), reverse=True))


def _strip_region(text: str) -> tuple[str, str | None]:
    """Remove leading division names (longest first, repeatedly); return the rest and the most
    specific (last) name removed."""
    last: str | None = None
    stripped = True
    while stripped:
        stripped = False
        for length, names in _regions_by_length():
            # keep at least two characters of the name proper
            if len(text) - length >= 2 and text[:length] in names:
                last = _REGION_SUFFIX.sub("", text[:length]) or text[:length]
                text = text[length:]
                stripped = True
                break
    return text, last


def _parse_zh(key: str) -> tuple[str, str | None, str | None]:
    legal: str | None = None
    body = key
    for form in _ZH_LEGAL_FORMS:
        if body.endswith(form) and len(body) > len(form):
            legal, body = form, body[: -len(form)]
            break
    bracket = re.search(r"\(([^()]*)\)$", body)
    region_inside: str | None = None
    if bracket and bracket.group(1) in region_names():
        region_inside = _REGION_SUFFIX.sub("", bracket.group(1)) or bracket.group(1)
        body = body[: bracket.start()]
    body, region = _strip_region(body)
    return body, region or region_inside, legal


def _parse_latin(name: str) -> tuple[str, str | None, str | None]:
    words = [w for w in re.split(r"[^0-9a-z']+", name) if w]
    legal: list[str] = []
    while words and words[-1] in _LATIN_LEGAL:
        legal.insert(0, _LATIN_LEGAL[words.pop()])
    region: str | None = None
    if len(words) > 1 and words[0] in PINYIN_REGIONS:
        region = words.pop(0).replace("'", "")
    core = "".join(words).replace("'", "")
    return core, region, " ".join(legal) or None


def parse_company_name(name: str | None) -> CompanyName | None:
    """Take ``name`` apart (see the module rules); ``None`` for an empty name."""
    key = normalise_name(name)
    if key is None or name is None:
        return None
    if _CJK.search(key):
        core, region, legal = _parse_zh(key)
        return CompanyName(key, core or key, region, legal, "zh")
    folded = unicodedata.normalize("NFKC", name).casefold()
    core, region, legal = _parse_latin(folded)
    return CompanyName(key, core or key, region, legal, "latin")
