"""Synthetic identity data with known truth: enterprises, the noisy records banks and public
sources hold about them (name variants, missing codes, look-alike neighbours), and the noisy
information their users enter. Deterministic for a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from flowbureau.cleaning.normalise import normalise_name
from flowbureau.identity.model import MatchInput
from flowbureau.identity.sources import name_key
from flowbureau.synth.codes import credit_code

CITIES = ["福州", "厦门", "泉州", "宁波", "苏州", "东莞", "佛山", "合肥"]
BRANDS = "嘉宇浩华裕恒志宇鸿达润丰盛源瑞祥恒信海川金桥天成永安"
TRADES = ["电子科技", "贸易", "精密机械", "物流", "餐饮管理", "建材", "纺织", "五金制品"]
SURNAMES = "张王李赵刘陈杨黄周吴"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超"


@dataclass
class Truth:
    """Enterprises, their records, the entries their users made, and who owns what."""

    records: list[MatchInput] = field(default_factory=list)
    entries: list[MatchInput] = field(default_factory=list)
    owner: dict[str, str] = field(default_factory=dict)  # record uid -> enterprise entry uid


def _variant(rng: random.Random, name: str) -> str:
    choice = rng.randrange(4)
    if choice == 0:
        return name.replace("有限公司", "有限责任公司")  # normalises to the same key
    if choice == 1:
        return name[:2] + "市" + name[2:]
    if choice == 2:
        i = rng.randrange(2, len(name) - 4)
        return name[:i] + rng.choice(BRANDS) + name[i + 1 :]  # one character mistyped
    return name.replace("有限公司", "（有限公司）")


def _entity(
    rng: random.Random, uid: str, name: str, code: str | None, **extra: object
) -> MatchInput:
    norm = normalise_name(name)
    return MatchInput(uid=uid, credit_code=code, name_norm=norm, name_key=name_key(norm), **extra)  # type: ignore[arg-type]


def make_truth(n: int, *, seed: int) -> Truth:
    """``n`` enterprises (look-alike pairs among them) and their records and entries."""
    rng = random.Random(seed)
    truth = Truth()
    codes: set[str] = set()
    for i in range(n):
        region = f"3{rng.randrange(10)}0{rng.randrange(10)}0{rng.randrange(10)}"
        code = credit_code(region, f"{rng.randrange(10_000_000, 99_999_999)}")
        while code in codes:
            code = credit_code(region, f"{rng.randrange(10_000_000, 99_999_999)}")
        codes.add(code)
        if i % 3 == 1:  # a look-alike of the previous enterprise: same city and brand
            stem = truth.entries[-1].name_norm or ""
            name = stem[:4] + rng.choice(TRADES) + "有限公司"
        else:
            name = (
                rng.choice(CITIES)
                + "".join(rng.sample(BRANDS, 2))
                + rng.choice(TRADES)
                + "有限公司"
            )
        phone = f"1{rng.randrange(3, 10)}{rng.randrange(10**8, 10**9)}"
        legal = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
        accounts = [f"acct{i}-{k}" for k in range(rng.randrange(1, 4))]
        eid = f"e{i}"
        # what the enterprise's user enters
        truth.entries.append(
            _entity(
                rng,
                eid,
                name if rng.random() < 0.8 else _variant(rng, name),
                code if rng.random() < 0.94 else None,
                phone_lookup=phone if rng.random() < 0.5 else f"9{rng.randrange(10**9)}",
                legal_representative=normalise_name(
                    legal if rng.random() < 0.9 else rng.choice(SURNAMES) + "明"
                ),
                accounts=tuple(a for a in accounts if rng.random() < 0.7),
            )
        )
        # the registry
        truth.records.append(
            _entity(
                rng,
                f"reg{i}",
                name,
                code,
                phone_lookup=phone,
                legal_representative=normalise_name(legal),
            )
        )
        truth.owner[f"reg{i}"] = eid
        # the banks' account registers
        for k, account in enumerate(accounts):
            uid = f"bank{i}-{k}"
            truth.records.append(
                _entity(
                    rng,
                    uid,
                    name if rng.random() < 0.9 else _variant(rng, name),
                    code if rng.random() < 0.85 else None,
                    accounts=(account,),
                )
            )
            truth.owner[uid] = eid
        # public records: some carry a name, some lost the code
        for k in range(rng.randrange(0, 3)):
            uid = f"pub{i}-{k}"
            has_code = rng.random() < 0.85
            truth.records.append(
                _entity(
                    rng,
                    uid,
                    (name if rng.random() < 0.8 else _variant(rng, name))
                    if (not has_code or rng.random() < 0.6)
                    else "",
                    code if has_code else None,
                )
            )
            truth.owner[uid] = eid
    return truth
