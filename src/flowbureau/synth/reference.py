"""Reference tables the generator draws from: industries, places, banks, names, calendars.

Rules:
- Facts come from public standards and are cited: GB/T 4754-2017 (industry classification,
  ``flowbureau/data/gbt4754_2017.csv``), GB/T 2260 administrative division codes (the
  prefecture list below; districts are read from the copy of the code table that ships with
  python-stdnum, ``stdnum/cn/loc.dat``), the banks' SWIFT BICs, the Chinese New Year dates.
- Everything else here (brand words, industry words, cost ratios, supply-chain affinities) is
  generator modelling: plausible, documented in ``docs/synth.md``, not a statistic.
- Tables are tuples or read-only mappings built once; nothing here depends on a seed.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Final

# ---------------------------------------------------------------------------------------------
# GB/T 4754-2017


@dataclass(frozen=True, slots=True)
class Section:
    """A GB/T 4754-2017 section (门类), ``A`` .. ``T``."""

    code: str
    name_zh: str
    name_en: str


@dataclass(frozen=True, slots=True)
class Division:
    """A GB/T 4754-2017 division (大类), ``01`` .. ``97``, and the section it belongs to."""

    code: str
    section: str
    name_zh: str
    name_en: str


@dataclass(frozen=True, slots=True)
class IndustryTable:
    """The GB/T 4754-2017 sections and divisions, in the standard's order."""

    sections: MappingProxyType[str, Section]
    divisions: MappingProxyType[str, Division]


@cache
def gbt4754() -> IndustryTable:
    """Load ``flowbureau/data/gbt4754_2017.csv`` (20 sections, 97 divisions)."""
    text = resources.files("flowbureau.data").joinpath("gbt4754_2017.csv").read_text("utf-8")
    rows = csv.DictReader(
        io.StringIO("\n".join(line for line in text.splitlines() if not line.startswith("#")))
    )
    sections: dict[str, Section] = {}
    divisions: dict[str, Division] = {}
    for row in rows:
        if row["level"] == "section":
            sections[row["code"]] = Section(row["code"], row["name_zh"], row["name_en"])
        else:
            divisions[row["code"]] = Division(
                row["code"], row["section"], row["name_zh"], row["name_en"]
            )
    return IndustryTable(MappingProxyType(sections), MappingProxyType(divisions))


@dataclass(frozen=True, slots=True)
class IndustryProfile:
    """How the generator models enterprises of one division.

    ``weight``: relative frequency among the consortium's SME customers. ``words``: industry
    words for company names, Chinese and English. ``cogs``: purchases / revenue.
    ``payroll``: wages / revenue. ``utilities``: energy and water / revenue. ``cash``: share
    of sales taken in cash. ``cyclical``: sensitivity to the macro factor. ``suppliers``:
    divisions this industry buys from, with weights.
    """

    weight: float
    words: tuple[tuple[str, str], ...]
    cogs: float
    payroll: float
    utilities: float
    cash: float
    cyclical: float
    suppliers: tuple[tuple[str, float], ...]


def _load_profiles() -> dict[str, IndustryProfile]:
    text = resources.files("flowbureau.synth").joinpath("industry_profiles.csv").read_text("utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    profiles: dict[str, IndustryProfile] = {}
    for row in csv.DictReader(io.StringIO(body)):
        profiles[row["division"]] = IndustryProfile(
            weight=float(row["weight"]),
            words=tuple(
                (zh.strip(), en.strip())
                for zh, en in (pair.split("=") for pair in row["words"].split(";"))
            ),
            cogs=float(row["cogs"]),
            payroll=float(row["payroll"]),
            utilities=float(row["utilities"]),
            cash=float(row["cash"]),
            cyclical=float(row["cyclical"]),
            suppliers=tuple(
                (division, float(w))
                for division, w in (s.split(":") for s in row["suppliers"].split())
            ),
        )
    return profiles


INDUSTRY_PROFILES: Final[MappingProxyType[str, IndustryProfile]] = MappingProxyType(
    _load_profiles()
)
"""Divisions the generator draws SMEs from (state monopolies, finance, public administration
and international organisations are not drawn: the consortium's customers are private SMEs).
Read from ``flowbureau/synth/industry_profiles.csv`` (see :class:`IndustryProfile`)."""


# ---------------------------------------------------------------------------------------------
# Places (GB/T 2260 codes)


@dataclass(frozen=True, slots=True)
class Prefecture:
    """A prefecture-level city (or a municipality) and what addresses and names need of it."""

    code: str
    province: str
    city: str
    pinyin: str
    area_code: str
    weight: float

    @property
    def municipality(self) -> bool:
        """Beijing, Shanghai, Tianjin, Chongqing: the province is the city."""
        return self.province == self.city + "市"

    @property
    def province_short(self) -> str:
        """The province without its suffix (江苏省 -> 江苏, 广西壮族自治区 -> 广西)."""
        return re.sub(r"(省|市|壮族自治区|回族自治区|维吾尔自治区|自治区)$", "", self.province)


PREFECTURES: Final[tuple[Prefecture, ...]] = (
    Prefecture("110100", "北京市", "北京", "Beijing", "010", 8.0),
    Prefecture("310100", "上海市", "上海", "Shanghai", "021", 8.0),
    Prefecture("120100", "天津市", "天津", "Tianjin", "022", 3.0),
    Prefecture("500100", "重庆市", "重庆", "Chongqing", "023", 3.0),
    Prefecture("130100", "河北省", "石家庄", "Shijiazhuang", "0311", 2.0),
    Prefecture("140100", "山西省", "太原", "Taiyuan", "0351", 1.0),
    Prefecture("210100", "辽宁省", "沈阳", "Shenyang", "024", 2.0),
    Prefecture("210200", "辽宁省", "大连", "Dalian", "0411", 2.0),
    Prefecture("220100", "吉林省", "长春", "Changchun", "0431", 1.0),
    Prefecture("230100", "黑龙江省", "哈尔滨", "Harbin", "0451", 1.0),
    Prefecture("320100", "江苏省", "南京", "Nanjing", "025", 4.0),
    Prefecture("320200", "江苏省", "无锡", "Wuxi", "0510", 3.0),
    Prefecture("320400", "江苏省", "常州", "Changzhou", "0519", 2.0),
    Prefecture("320500", "江苏省", "苏州", "Suzhou", "0512", 5.0),
    Prefecture("330100", "浙江省", "杭州", "Hangzhou", "0571", 5.0),
    Prefecture("330200", "浙江省", "宁波", "Ningbo", "0574", 3.0),
    Prefecture("330300", "浙江省", "温州", "Wenzhou", "0577", 2.0),
    Prefecture("330700", "浙江省", "金华", "Jinhua", "0579", 2.0),
    Prefecture("340100", "安徽省", "合肥", "Hefei", "0551", 2.0),
    Prefecture("350100", "福建省", "福州", "Fuzhou", "0591", 2.0),
    Prefecture("350200", "福建省", "厦门", "Xiamen", "0592", 2.0),
    Prefecture("350500", "福建省", "泉州", "Quanzhou", "0595", 2.0),
    Prefecture("360100", "江西省", "南昌", "Nanchang", "0791", 1.0),
    Prefecture("370100", "山东省", "济南", "Jinan", "0531", 2.0),
    Prefecture("370200", "山东省", "青岛", "Qingdao", "0532", 3.0),
    Prefecture("370600", "山东省", "烟台", "Yantai", "0535", 1.0),
    Prefecture("410100", "河南省", "郑州", "Zhengzhou", "0371", 3.0),
    Prefecture("420100", "湖北省", "武汉", "Wuhan", "027", 3.0),
    Prefecture("430100", "湖南省", "长沙", "Changsha", "0731", 3.0),
    Prefecture("440100", "广东省", "广州", "Guangzhou", "020", 6.0),
    Prefecture("440300", "广东省", "深圳", "Shenzhen", "0755", 7.0),
    Prefecture("440600", "广东省", "佛山", "Foshan", "0757", 3.0),
    Prefecture("441900", "广东省", "东莞", "Dongguan", "0769", 3.0),
    Prefecture("442000", "广东省", "中山", "Zhongshan", "0760", 1.0),
    Prefecture("450100", "广西壮族自治区", "南宁", "Nanning", "0771", 1.0),
    Prefecture("510100", "四川省", "成都", "Chengdu", "028", 4.0),
    Prefecture("520100", "贵州省", "贵阳", "Guiyang", "0851", 1.0),
    Prefecture("530100", "云南省", "昆明", "Kunming", "0871", 1.0),
    Prefecture("610100", "陕西省", "西安", "Xi'an", "029", 2.0),
    Prefecture("620100", "甘肃省", "兰州", "Lanzhou", "0931", 1.0),
)
"""Prefecture-level cities (GB/T 2260 codes; the municipalities by their 市辖区 code) with
telephone area codes; ``weight`` is the generator's share of SMEs."""

_LOC_LINE = re.compile(r'^\s+(\d{4}) county="(.*)"$')
_PROVINCE_LINE = re.compile(r"^(\d{2}) province=")
_NAME_SPAN = re.compile(r"^\[(\d{4})?-(\d{4})?\](.*)$")


def current_name(value: str) -> str | None:
    """The name a ``loc.dat`` entry has today (``[-1991]东郊区,[1992-]东丽区`` -> 东丽区), or
    ``None`` when the division was abolished."""
    current: str | None = None
    for part in value.split(","):
        span = _NAME_SPAN.match(part)
        if span is None:
            current = part
        elif span.group(2) is None:
            current = span.group(3)
    return current


@cache
def districts() -> MappingProxyType[str, tuple[tuple[str, str], ...]]:
    """Current districts / counties of each prefecture in :data:`PREFECTURES`.

    Maps the prefecture code to ``(6-digit code, name)`` pairs from python-stdnum's copy of
    the GB/T 2260 table, leaving out abolished codes and the 市辖区 placeholders. A
    prefecture without county-level divisions (东莞, 中山) maps to itself.
    """
    text = resources.files("stdnum.cn").joinpath("loc.dat").read_text("utf-8")
    wanted = {p.code[:4]: p for p in PREFECTURES}
    found: dict[str, list[tuple[str, str]]] = {p.code: [] for p in PREFECTURES}
    province = ""
    for line in text.splitlines():
        head = _PROVINCE_LINE.match(line)
        if head:
            province = head.group(1)
            continue
        match = _LOC_LINE.match(line)
        if not match:
            continue
        code = province + match.group(1)
        prefecture = wanted.get(code[:4])
        name = current_name(match.group(2))
        if prefecture is None or name is None or code.endswith(("00", "01")):
            continue
        if name.endswith(("区", "县", "市")) and name != "市辖区":
            found[prefecture.code].append((code, name))
    return MappingProxyType(
        {code: tuple(pairs) if pairs else ((code, ""),) for code, pairs in found.items()}
    )


ROADS: Final[tuple[str, ...]] = (
    "人民路",
    "解放路",
    "中山路",
    "建设路",
    "和平路",
    "新华路",
    "长江路",
    "黄河路",
    "东风路",
    "胜利路",
    "青年路",
    "朝阳路",
    "光明路",
    "文化路",
    "工业园路",
    "科技路",
    "创业路",
    "发展大道",
    "迎宾大道",
    "滨江路",
    "环城路",
    "兴业路",
    "振兴路",
    "繁荣路",
    "金山路",
    "开发区大道",
    "产业园路",
    "工业大道",
    "园区路",
    "高新路",
)
"""Common road names for addresses (generic: most Chinese cities have one of each)."""

# ---------------------------------------------------------------------------------------------
# Names


PINYIN: Final[MappingProxyType[str, str]] = MappingProxyType(
    {
        "王": "wang",
        "李": "li",
        "张": "zhang",
        "刘": "liu",
        "陈": "chen",
        "杨": "yang",
        "黄": "huang",
        "赵": "zhao",
        "吴": "wu",
        "周": "zhou",
        "徐": "xu",
        "孙": "sun",
        "马": "ma",
        "朱": "zhu",
        "胡": "hu",
        "郭": "guo",
        "何": "he",
        "高": "gao",
        "林": "lin",
        "罗": "luo",
        "郑": "zheng",
        "梁": "liang",
        "谢": "xie",
        "宋": "song",
        "唐": "tang",
        "许": "xu",
        "韩": "han",
        "冯": "feng",
        "邓": "deng",
        "曹": "cao",
        "彭": "peng",
        "曾": "zeng",
        "肖": "xiao",
        "田": "tian",
        "董": "dong",
        "袁": "yuan",
        "潘": "pan",
        "于": "yu",
        "蒋": "jiang",
        "蔡": "cai",
        "余": "yu",
        "杜": "du",
        "叶": "ye",
        "程": "cheng",
        "苏": "su",
        "魏": "wei",
        "丁": "ding",
        "任": "ren",
        "沈": "shen",
        "伟": "wei",
        "芳": "fang",
        "娜": "na",
        "敏": "min",
        "静": "jing",
        "丽": "li",
        "强": "qiang",
        "磊": "lei",
        "军": "jun",
        "洋": "yang",
        "勇": "yong",
        "艳": "yan",
        "杰": "jie",
        "娟": "juan",
        "涛": "tao",
        "明": "ming",
        "超": "chao",
        "秀": "xiu",
        "霞": "xia",
        "平": "ping",
        "刚": "gang",
        "桂": "gui",
        "英": "ying",
        "华": "hua",
        "玉": "yu",
        "萍": "ping",
        "红": "hong",
        "鹏": "peng",
        "辉": "hui",
        "建": "jian",
        "国": "guo",
        "文": "wen",
        "斌": "bin",
        "宇": "yu",
        "浩": "hao",
        "凯": "kai",
        "俊": "jun",
        "鑫": "xin",
        "婷": "ting",
        "雪": "xue",
        "琳": "lin",
        "晨": "chen",
        "阳": "yang",
        "峰": "feng",
        "波": "bo",
        "亮": "liang",
        "飞": "fei",
        "龙": "long",
        "志": "zhi",
        "海": "hai",
        "东": "dong",
        "春": "chun",
        "梅": "mei",
        "兰": "lan",
        "新": "xin",
        "永": "yong",
        "德": "de",
        "成": "cheng",
        "荣": "rong",
        "信": "xin",
        "恒": "heng",
        "达": "da",
        "源": "yuan",
        "盛": "sheng",
        "泰": "tai",
        "宏": "hong",
        "远": "yuan",
        "天": "tian",
        "瑞": "rui",
        "丰": "feng",
        "金": "jin",
        "昌": "chang",
        "隆": "long",
        "兴": "xing",
        "祥": "xiang",
        "和": "he",
        "嘉": "jia",
        "裕": "yu",
        "安": "an",
        "光": "guang",
        "通": "tong",
        "博": "bo",
        "润": "run",
        "中": "zhong",
        "诚": "cheng",
        "汇": "hui",
        "佳": "jia",
        "旭": "xu",
        "鸿": "hong",
        "方": "fang",
        "正": "zheng",
        "合": "he",
        "创": "chuang",
        "锦": "jin",
        "富": "fu",
        "万": "wan",
        "广": "guang",
        "益": "yi",
        "康": "kang",
        "立": "li",
        "联": "lian",
        "亚": "ya",
        "欣": "xin",
        "美": "mei",
        "胜": "sheng",
        "智": "zhi",
        "卓": "zhuo",
        "越": "yue",
        "腾": "teng",
        "弘": "hong",
        "顺": "shun",
        "捷": "jie",
        "宝": "bao",
        "力": "li",
        "众": "zhong",
        "鼎": "ding",
        "晟": "sheng",
        "昊": "hao",
        "坤": "kun",
        "振": "zhen",
    }
)
"""Hanyu pinyin (toneless) of every character the name generator uses."""

SURNAMES: Final[tuple[tuple[str, float], ...]] = (
    ("王", 7.1),
    ("李", 7.0),
    ("张", 6.8),
    ("刘", 5.4),
    ("陈", 4.6),
    ("杨", 3.1),
    ("黄", 2.4),
    ("赵", 2.3),
    ("吴", 2.0),
    ("周", 1.9),
    ("徐", 1.5),
    ("孙", 1.5),
    ("马", 1.4),
    ("朱", 1.3),
    ("胡", 1.3),
    ("郭", 1.2),
    ("何", 1.2),
    ("高", 1.1),
    ("林", 1.1),
    ("罗", 0.9),
    ("郑", 0.9),
    ("梁", 0.9),
    ("谢", 0.8),
    ("宋", 0.8),
    ("唐", 0.8),
    ("许", 0.7),
    ("韩", 0.7),
    ("冯", 0.7),
    ("邓", 0.7),
    ("曹", 0.6),
    ("彭", 0.6),
    ("曾", 0.6),
    ("肖", 0.6),
    ("田", 0.6),
    ("董", 0.5),
    ("袁", 0.5),
    ("潘", 0.5),
    ("于", 0.5),
    ("蒋", 0.5),
    ("蔡", 0.5),
    ("余", 0.5),
    ("杜", 0.5),
    ("叶", 0.5),
    ("程", 0.5),
    ("苏", 0.4),
    ("魏", 0.4),
    ("丁", 0.4),
    ("任", 0.4),
    ("沈", 0.4),
)
"""Common surnames with their approximate share of the population, in percent."""

GIVEN_CHARS: Final[str] = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红鹏辉建国文斌宇浩凯俊鑫婷雪琳晨阳峰"
    "波亮飞龙志海东春梅兰新永德成荣"
)
"""Characters of given names."""

BRAND_CHARS: Final[str] = (
    "华信恒达鑫源盛泰宏远新天海瑞丰金永昌隆兴祥和嘉裕安德明辉光通博宇润中诚汇佳凯晨荣旭鸿东"
    "方正合创锦龙富万广峰益康立联亚欣美志胜智卓越腾飞浩弘顺捷宝力众鼎晟昊坤振俊"
)
"""Characters of two-character brand words (字号) in company names."""

FOREIGN_WORDS: Final[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = (
    (
        "Pacific",
        "Atlantic",
        "Nordic",
        "Golden",
        "Silver",
        "Blue",
        "Summit",
        "Harbor",
        "Union",
        "Global",
        "Prime",
        "Sunrise",
        "Northern",
        "Eastern",
        "Western",
        "Royal",
        "Crown",
        "Delta",
    ),
    (
        "Trading",
        "Imports",
        "Components",
        "Industries",
        "Supply",
        "Distribution",
        "Retail",
        "Electronics",
        "Textiles",
        "Machinery",
        "Foods",
        "Home",
    ),
    ("LLC", "Ltd", "GmbH", "Inc", "B.V.", "Pte Ltd", "S.A.", "Pty Ltd"),
)
"""Word lists for the names of overseas customers (export receipts in USD)."""

FOREIGN_BANKS: Final[tuple[str, ...]] = (
    "HSBC Hong Kong",
    "Citibank N.A. New York",
    "Deutsche Bank AG Frankfurt",
    "MUFG Bank Tokyo",
    "DBS Bank Singapore",
    "BNP Paribas Paris",
)
"""Overseas banks of overseas counterparties."""

# ---------------------------------------------------------------------------------------------
# Banks


@dataclass(frozen=True, slots=True)
class BankCatalogEntry:
    """A Chinese bank: id (also the profile name where one exists), names, BIC, account layout."""

    bank_id: str
    name_zh: str
    name_en: str
    bic: str
    account_digits: int


BANK_CATALOG: Final[tuple[BankCatalogEntry, ...]] = (
    BankCatalogEntry(
        "icbc", "中国工商银行", "Industrial and Commercial Bank of China", "ICBKCNBJ", 19
    ),
    BankCatalogEntry("ccb", "中国建设银行", "China Construction Bank", "PCBCCNBJ", 19),
    BankCatalogEntry("abc", "中国农业银行", "Agricultural Bank of China", "ABOCCNBJ", 17),
    BankCatalogEntry("boc", "中国银行", "Bank of China", "BKCHCNBJ", 18),
    BankCatalogEntry("bocom", "交通银行", "Bank of Communications", "COMMCNSH", 19),
    BankCatalogEntry("cmb", "招商银行", "China Merchants Bank", "CMBCCNBS", 16),
    BankCatalogEntry("citic", "中信银行", "China CITIC Bank", "CIBKCNBJ", 18),
    BankCatalogEntry(
        "spdb", "上海浦东发展银行", "Shanghai Pudong Development Bank", "SPDBCNSH", 17
    ),
    BankCatalogEntry("cib", "兴业银行", "Industrial Bank", "FJIBCNBA", 18),
    BankCatalogEntry("cmbc", "中国民生银行", "China Minsheng Bank", "MSBCCNBJ", 16),
    BankCatalogEntry("ceb", "中国光大银行", "China Everbright Bank", "EVERCNBJ", 16),
    BankCatalogEntry("hxb", "华夏银行", "Hua Xia Bank", "HXBKCNBJ", 16),
    BankCatalogEntry("pab", "平安银行", "Ping An Bank", "SZDBCNBS", 16),
    BankCatalogEntry("cgb", "广发银行", "China Guangfa Bank", "GDBKCN22", 19),
    BankCatalogEntry("psbc", "中国邮政储蓄银行", "Postal Savings Bank of China", "PSBCCNBJ", 18),
    BankCatalogEntry("bob", "北京银行", "Bank of Beijing", "BJCNCNBJ", 17),
    BankCatalogEntry("bosc", "上海银行", "Bank of Shanghai", "BOSHCNSH", 17),
    BankCatalogEntry("njcb", "南京银行", "Bank of Nanjing", "NJCBCNBN", 16),
    BankCatalogEntry("nbcb", "宁波银行", "Bank of Ningbo", "BKNBCN2N", 18),
    BankCatalogEntry("czb", "浙商银行", "China Zheshang Bank", "ZJCBCN2N", 19),
)
"""Banks in the preferred order of assignment. A profile named like a bank id (``icbc``) is that
bank's export layout; banks beyond this list are rural commercial banks (``rcb21`` ...)."""

# ---------------------------------------------------------------------------------------------
# Calendar


CHINESE_NEW_YEAR: Final[MappingProxyType[int, date]] = MappingProxyType(
    {
        2010: date(2010, 2, 14),
        2011: date(2011, 2, 3),
        2012: date(2012, 1, 23),
        2013: date(2013, 2, 10),
        2014: date(2014, 1, 31),
        2015: date(2015, 2, 19),
        2016: date(2016, 2, 8),
        2017: date(2017, 1, 28),
        2018: date(2018, 2, 16),
        2019: date(2019, 2, 5),
        2020: date(2020, 1, 25),
        2021: date(2021, 2, 12),
        2022: date(2022, 2, 1),
        2023: date(2023, 1, 22),
        2024: date(2024, 2, 10),
        2025: date(2025, 1, 29),
        2026: date(2026, 2, 17),
        2027: date(2027, 2, 6),
        2028: date(2028, 1, 26),
        2029: date(2029, 2, 13),
        2030: date(2030, 2, 3),
        2031: date(2031, 1, 23),
        2032: date(2032, 2, 11),
        2033: date(2033, 1, 31),
        2034: date(2034, 2, 19),
        2035: date(2035, 2, 8),
    }
)
"""Chinese New Year's day (正月初一) by Gregorian year; the generator's calendar range."""
