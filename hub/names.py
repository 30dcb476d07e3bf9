"""Person names compared the way Russians write them.

Names never merge two records by themselves: two Иван Петров are usually two
people. What names decide is whether a value two records share can join them.
A personal phone or mailbox joins its holders unless their names say they are
different people (`compatible`); a value that several people use — a
switchboard, a household landline, an office mailbox — joins two records only
when their names positively say one person (`agree`).

So a wrong "different" splits one customer in two, and a wrong "same" glues a
husband to his wife through their landline. The comparison therefore knows
what makes one person's name look different on two records without being
different: ё/е and case, the order of the parts (Иванов Иван / Иван Иванов, or
the whole name typed in one field), initials (Соколов П.), diminutives and
full forms (Саша / Александр, from names_forms.json), Latin spellings of
Cyrillic names in any common transliteration (Petr / Pyotr / Пётр), and the
gender forms of one surname (Николаев / Николаева). It also knows what makes
two names different people: first names that are not forms of one name
(including Александр / Александра), different surnames, different patronymics.

Every comparison runs for each value two records hold in an import of a
million rows, so names are parsed once (cached) into Latin "skeletons" that
fold all the spellings of a name to one string.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

FORMS_FILE = Path(__file__).with_name("names_forms.json")


class Name(NamedTuple):
    """A person's name as a record holds it; any part may be missing or hold the whole name.

    A named tuple: every comparison of an import looks names up in caches,
    and a tuple's hash and equality run in C.
    """

    first: str | None = None
    last: str | None = None
    middle: str | None = None

    @property
    def empty(self) -> bool:
        """No usable part at all (missing, digits, or a placeholder such as "Клиент")."""
        return _parse(self).empty


class _Part(NamedTuple):
    """One part of a parsed name: its skeleton, its folded spelling, whether it is an initial."""

    skeleton: str
    text: str
    initial: bool


class _Parsed(NamedTuple):
    first: _Part | None
    last: _Part | None
    middle: _Part | None

    @property
    def empty(self) -> bool:
        return self.first is None and self.last is None and self.middle is None


# --- spelling -------------------------------------------------------------------------------------------

# Cyrillic to Latin, chosen so that the reductions below bring every common transliteration
# (GOST 2006 passports, ICAO 2013, BGN/PCGN, scientific, informal) to the same skeleton.
_CYRILLIC = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z", "и": "i",
    "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t",
    "у": "u", "ф": "f", "х": "h", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "sch", "ъ": "", "ы": "i", "ь": "",
    "э": "e", "ю": "iu", "я": "ia", "і": "i", "ї": "i", "є": "e", "ґ": "g",
}
# Latin letters with diacritics that stand for a Cyrillic sound of their own (scientific, ISO 9).
_LATIN_MARKS = {"š": "sh", "č": "ch", "ž": "zh", "ŝ": "sch", "ǆ": "dzh", "ʹ": "", "ʺ": "", "’": "", "'": ""}
_TRANSLATE = str.maketrans({**_CYRILLIC, **_LATIN_MARKS})

# Each reduction runs only when one of its guard substrings is in the word: most words need few of them.
_Reduction = tuple[tuple[str, ...], "re.Pattern[str]", str]


def _reductions(*rules: tuple[tuple[str, ...], str, str]) -> tuple[_Reduction, ...]:
    return tuple((guards, re.compile(pattern), replacement) for guards, pattern, replacement in rules)


_BEFORE_C = _reductions(
    (("shch",), r"shch", "sch"),  # Щукин: Shchukin (passports) and Schukin (informal)
    (("tc",), r"tch", "ch"),  # Tchaikovsky
    (("tc",), r"tc", "ts"),  # ц in GOST 2006: Tcvetkov
)
# A lone "c" is ц in the Russian-made transliterations (Kuznecov, Savickiy, Coy: what translit tools and
# CRMs write) and к in Western spellings of first names (Victor, Nicolai, Constantin): see skeleton.
_C_AS_TS = _reductions((("c",), r"c(?!h)", "ts"))
_C_AS_K = _reductions(
    (("ck",), r"ck", "k"),
    (("c",), r"c(?!h)(?=[aoulrkt]|$)", "k"),  # Nicolai, Victor
    (("c",), r"c(?!h)", "ts"),
)
_AFTER_C = _reductions(
    (("x",), r"x", "ks"),  # Alexander, Xenia
    (("ph",), r"ph", "f"),
    (("th",), r"th", "t"),
    (("w",), r"w", "v"),
    (("q",), r"q", "k"),
    (("kh",), r"kh", "h"),  # х: Mikhail / Mihail
    (("gh",), r"gh", "g"),  # Serghei
    (("j", "y"), r"[jy]", "i"),  # й, ы and the iotated vowels: Andrey / Andrei / Andrej
    (("ii",), r"i+", "i"),  # Dmitrii / Dmitriy / Dmitry, Iuliia / Yulia
    (("ie", "io"), r"i[eo]", "e"),  # Yevgeny / Evgeny, Pyotr / Piotr / Petr (ё written as e)
    (("iu",), r"([bdfgklmnprstvz])iu", r"\1u"),  # Lyudmila / Ludmila
    (("er",), r"([bdfgkptv])er$", r"\1r"),  # Aleksander / Aleksandr
    ((), r"(.)\1+", r"\1"),  # Kirill / Kiril, Savva / Sava
)
_NOT_LATIN = re.compile(r"[^a-z]")
_LONE_C = re.compile(r"c(?!h)")
# Entries each cache keeps: names repeat across a base, so a cache this size answers most calls; a
# larger one (262,144) cost a million-row import 310 MB more memory and no measurable speed.
CACHE = 32768


def fold(text: str) -> str:
    """Lowercase, ё as е, single spaces: how two spellings of one word are compared as typed."""
    return " ".join(text.lower().replace("ё", "е").split())


def _reduce(text: str, *stages: tuple[_Reduction, ...]) -> str:
    for stage in stages:
        for guards, pattern, replacement in stage:
            if not guards or any(g in text for g in guards):
                text = pattern.sub(replacement, text)
    return text


def _latin(word: str) -> str:
    text = word.lower().translate(_TRANSLATE)
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    if not (text.isascii() and text.isalpha()):
        text = _NOT_LATIN.sub("", text)
    return _reduce(text, _BEFORE_C)


@lru_cache(maxsize=CACHE)
def skeleton(word: str) -> str:
    """One Latin string for every common spelling of a name word, Cyrillic or Latin (Пётр, Petr, Pyotr → petr).

    A Latin "c" is read as ц (Kuznecov is Кузнецов), unless reading it as к
    makes a first name of the table or a patronymic or surname made of one
    (Victor is Виктор, Nicolai Николай, Nicolaev Николаев).
    """
    text = _latin(word)
    if not _LONE_C.search(text):
        return _reduce(text, _AFTER_C)
    as_k = _reduce(text, _C_AS_K, _AFTER_C)
    return as_k if _names_a_first_name(as_k) else _reduce(text, _C_AS_TS, _AFTER_C)


def _names_a_first_name(word_skeleton: str) -> bool:
    """A first name of the table, or a patronymic or surname made of one (Victorovich, Nicolaev, Marcova)."""
    if word_skeleton in _FIRST_NAMES:
        return True
    for ending in _MADE_OF_A_NAME:
        if word_skeleton.endswith(ending) and len(word_skeleton) - len(ending) >= 3 \
                and word_skeleton[:-len(ending)] in _NAME_STEMS:
            return True
    return False


# --- the table of first names ---------------------------------------------------------------------------


# {"male": {full name: "its forms …"}, "female": {…}}
_TABLE: dict[str, dict[str, str]] = json.loads(FORMS_FILE.read_text(encoding="utf-8"))


def _load_forms() -> dict[str, frozenset[str]]:
    """Skeleton of a full name or of any of its forms -> the full names it may stand for.

    A man's and a woman's name are two full names (Александр, Александра), so a form shared by both
    (Саша) stands for both and the two full names stand for nothing in common.
    """
    forms: dict[str, set[str]] = {}
    for names in (_TABLE["male"], _TABLE["female"]):
        for full, variants in names.items():
            for word in [full, *variants.split()]:
                # (the table's Latin forms are Western spellings, Victor and Catherine: "c" is к)
                forms.setdefault(_reduce(_latin(word), _C_AS_K, _AFTER_C), set()).add(full)
    return {k: frozenset(v) for k, v in forms.items()}


_FORMS = _load_forms()
_FIRST_NAMES = frozenset(_FORMS)
# What a patronymic or a surname is made of: a name, less its й (Николай: Николаевич, Николаев).
_NAME_STEMS = _FIRST_NAMES | {name[:-1] for name in _FIRST_NAMES if name.endswith("i") and len(name) > 4}
_MADE_OF_A_NAME = ("ovich", "evich", "ovna", "evna", "ov", "ev", "ova", "eva", "in", "ina")


def full_names(word: str) -> frozenset[str]:
    """The full first names (Cyrillic, as in the table) a first name may stand for; empty when unknown."""
    return _FORMS.get(skeleton(word), frozenset())


_NONE: frozenset[str] = frozenset()


# --- what is not a name ---------------------------------------------------------------------------------

_NOT_A_NAME = frozenset(
    fold(text)
    for text in (
        "клиент", "покупатель", "заказчик", "контакт", "абонент", "пользователь", "гость", "посетитель",
        "лид", "новый клиент", "новый контакт", "новый лид", "без имени", "без фамилии", "не указано",
        "не указан", "не указана", "нет", "нет имени", "неизвестно", "неизвестный", "аноним", "имя",
        "фамилия", "отчество", "фио", "тест", "тестовый", "test", "contact", "client", "customer", "user",
        "guest", "lead", "new contact", "new lead", "no name", "noname", "unknown", "anonymous", "name",
        "first name", "last name", "n/a", "na", "none", "null", "-", "—", "–", "?", ".", "x", "xxx",
    )
)
_PLACEHOLDER_WORDS = frozenset(w for w in _NOT_A_NAME if " " not in w)
# Words around a name that are not part of it ("ИП Иванов И.И.", "г-н Петров", "Mrs Smith").
_TITLES = frozenset({"ип", "г-н", "г-жа", "гн", "гжа", "господин", "госпожа", "mr", "mrs", "ms", "miss", "dr"})
# A legal form means the record names a company, not a person.
_COMPANY = frozenset({"ооо", "оао", "зао", "пао", "ао", "нко", "гуп", "муп", "фгуп", "llc", "ltd", "inc", "gmbh"})

_TOKEN = re.compile(r"[^\s.,;:/\\()\"«»]+\.?")
_LETTER = re.compile(r"[^\W\d_]")
_DIGIT = re.compile(r"\d")
_HYPHEN = re.compile(r"(?<=\w)\s*[-‐‑]\s*(?=\w)")  # "Петров - Водкин" is one double surname
_CYRILLIC_LETTER = re.compile(r"[а-яё]")


class _Token(NamedTuple):
    part: _Part
    hint: str  # the field it came from: "first", "last" or "middle"


@lru_cache(maxsize=CACHE)
def _tokens(text: str | None, hint: str) -> tuple[_Token, ...]:
    """The words of one field (cached apart from whole names: first names repeat across a base)."""
    if not text:
        return ()
    folded = _HYPHEN.sub("-", fold(text))
    if not folded or folded in _NOT_A_NAME:
        return ()
    out: list[_Token] = []
    for raw in _TOKEN.findall(folded):
        if _DIGIT.search(raw) or not _LETTER.search(raw):
            continue
        word = raw.rstrip(".").strip("-'’")
        if word in _COMPANY:
            return ()
        if not word or word in _PLACEHOLDER_WORDS or word in _TITLES:
            continue
        letters = len(word) if word.isalpha() else sum(1 for c in word if c.isalpha())
        initial = letters == 1 or (raw.endswith(".") and letters <= 3)
        skel = skeleton(word)
        if skel:
            out.append(_Token(_Part(skel, word, initial), hint))
    return tuple(out)


# --- parsing --------------------------------------------------------------------------------------------

_PATRONYMIC_ENDINGS = ("vich", "vna", "chna")
_SHORT_PATRONYMICS = frozenset({"ilich", "kuzmich", "lukich", "fomich", "nikitich", "fokich"})
_SURNAME_ENDINGS = (
    "ov", "ev", "in", "ova", "eva", "ina", "ski", "skaia", "tski", "tskaia", "oi", "aia", "ko", "uk", "iuk",
    "ih", "enko", "dze", "shvili", "ian",
)


def _patronymic(part: _Part) -> bool:
    s = part.skeleton
    return not part.initial and (s.endswith(_PATRONYMIC_ENDINGS) or s in _SHORT_PATRONYMICS)


def _surname_like(part: _Part) -> bool:
    return not part.initial and len(part.skeleton) > 4 and part.skeleton.endswith(_SURNAME_ENDINGS)


def looks_like_surname(word: str) -> bool:
    """Whether a word ends as Russian surnames do, in either script (Соколов, Sokolova, Ilyin)."""
    return _surname_like(_Part(skeleton(word), fold(word), False))


@lru_cache(maxsize=CACHE)
def _parse(name: Name) -> _Parsed:
    first, last, middle = _tokens(name.first, "first"), _tokens(name.last, "last"), _tokens(name.middle, "middle")
    if len(first) <= 1 and len(last) <= 1 and len(middle) <= 1:
        return _Parsed(first[0].part if first else None, last[0].part if last else None,
                       middle[0].part if middle else None)
    return _assign([*first, *last, *middle])


def _assign(tokens: list[_Token]) -> _Parsed:
    """Roles for the words of a name typed in one field (or spread over the fields in another way)."""
    first: _Part | None = None
    middle: _Part | None = None
    rest: list[_Token] = []
    for token in tokens:
        if not token.part.initial:
            rest.append(token)
        elif first is None:
            first = token.part
        elif middle is None:
            middle = token.part
    surname_first = False
    # A lone word in the surname field is a surname even when it ends like a patronymic (Абрамович).
    lone_last = sum(t.hint == "last" for t in tokens) == 1
    patronymics = [t for t in rest if _patronymic(t.part) and not (lone_last and t.hint == "last")]
    if patronymics and middle is None and len(rest) >= 2:
        chosen = next((t for t in patronymics if t.hint == "middle"), patronymics[-1])
        position = rest.index(chosen)
        middle = chosen.part
        rest.remove(chosen)
        if first is None and len(rest) >= 2:
            if position == 1:  # Иван Иванович Петров
                first, rest = rest[0].part, rest[1:]
            else:  # Петров Иван Иванович: the order of a Russian ФИО
                surname_first = position == len(rest)
    if first is None and rest:
        chosen = _pick_first(rest, surname_first)
        first = chosen.part
        rest.remove(chosen)
    last: _Part | None = None
    if rest:
        last = next((t for t in rest if t.hint == "last"), rest[0]).part
    return _Parsed(first, last, middle)


def _pick_first(tokens: list[_Token], surname_first: bool) -> _Token:
    if len(tokens) == 1:
        return tokens[0]
    known = [t for t in tokens if t.part.skeleton in _FORMS]
    if len(known) == 1:
        return known[0]
    plain = [t for t in (known or tokens) if not _surname_like(t.part)]
    if len(plain) == 1:
        return plain[0]
    by_hint = [t for t in tokens if t.hint == "first"]
    if len(by_hint) == 1:
        return by_hint[0]
    return tokens[1] if surname_first else tokens[0]


# --- comparing ------------------------------------------------------------------------------------------


@lru_cache(maxsize=CACHE)
def surname_stem(word_skeleton: str) -> str:
    """The surname without its gender ending: Николаев / Николаева, Толстой / Толстая, Крайний / Крайняя."""
    s = word_skeleton
    for ending, cut in (("iaia", 4), ("aia", 3), ("oi", 2), ("ova", 1), ("eva", 1), ("ina", 1)):
        if s.endswith(ending) and len(s) - cut >= 3:
            return s[:-cut]
    if s.endswith("i") and len(s) >= 5:  # -ий / -ый: Крайний, Достоевский
        return s[:-1]
    return s


def _prefix(a: _Part, b: _Part) -> bool:
    """An initial against a word or another initial, in the same script where both allow it."""
    if _CYRILLIC_LETTER.match(a.text) and _CYRILLIC_LETTER.match(b.text):
        return a.text.startswith(b.text) or b.text.startswith(a.text)
    return a.skeleton.startswith(b.skeleton) or b.skeleton.startswith(a.skeleton)


def _first_compatible(a_name: _Parsed, b_name: _Parsed) -> bool:
    """First names that may be one person's. A diminutive of both a man's and a woman's name (Саша, Женя)
    stands for the one the rest of its name, when it says a gender, says (_gendered_forms)."""
    a, b = a_name.first, b_name.first
    if a is None or b is None or a.skeleton == b.skeleton:
        return True
    if a.initial or b.initial:
        initial, word = (a, b) if a.initial else (b, a)
        if _prefix(initial, word):
            return True
        # "А." and Саша: the initial of the full name the diminutive stands for
        return any(_prefix(initial, _FULL_PARTS[full]) for full in _FORMS.get(word.skeleton, _NONE))
    fulls_a, fulls_b = _FORMS.get(a.skeleton, _NONE), _FORMS.get(b.skeleton, _NONE)
    if fulls_a.isdisjoint(fulls_b):
        return False
    return not _of_gender(a, a_name, b_name, fulls_a).isdisjoint(_of_gender(b, b_name, a_name, fulls_b))


def _of_gender(part: _Part, name: _Parsed, other: _Parsed, fulls: frozenset[str]) -> frozenset[str]:
    """The full names a first name stands for, narrowed to the gender the rest of its name says."""
    if part.skeleton not in _GENDERED_FORMS:
        return fulls
    gender = _gender(name, other)
    return fulls if gender is None else _GENDERED_FORMS[part.skeleton][gender]


_FULL_PARTS = {full: _Part(skeleton(full), fold(full), False) for fulls in _FORMS.values() for full in fulls}


def _gendered_forms() -> dict[str, dict[str, frozenset[str]]]:
    """Diminutives of both a man's and a woman's name (Саша, Женя, Слава) -> gender -> that gender's names."""
    men, women = set(_TABLE["male"]), set(_TABLE["female"])
    return {skel: {"male": fulls & men, "female": fulls & women}
            for skel, fulls in _FORMS.items() if fulls & men and fulls & women}


_GENDERED_FORMS = _gendered_forms()
# The endings of a woman's surname beside a man's form of it (Иванова / Иванов, Ильина / Ильин, Толстая / Толстой).
_HER_SURNAME_ENDINGS = ("ova", "eva", "ina", "aia")
_HER_PATRONYMIC_ENDINGS = ("vna", "chna")


def _gender(name: _Parsed, other: _Parsed) -> str | None:
    """The gender a name says for certain, compared with `other`: by its patronymic or its surname.

    A patronymic does, beside a surname (Женя Сергеевна Ким is Евгения;
    without a surname "Женя Карпович" may be her Belarusian surname). A
    surname does in its woman's form beside the man's form on the other
    record: a manager often types a woman's surname in the man's form (Саша
    Иванов may be Александра), but nobody types a man's in a woman's. So Саша
    Иванова and Александр Иванов, a wife and her husband on their family's
    phone, are two people. One surname on both records says nothing: Щербина,
    Калина, Шенгелая are men's surnames too.
    """
    middle, last = name.middle, name.last
    if last is None:
        return None
    if middle is not None and _patronymic(middle):
        return "female" if middle.skeleton.endswith(_HER_PATRONYMIC_ENDINGS) else "male"
    if last.skeleton.endswith(_HER_SURNAME_ENDINGS) and _other_gender(last, other.last) \
            and not (other.last is not None and other.last.skeleton.endswith(_HER_SURNAME_ENDINGS)):
        return "female"
    return None


def _last_compatible(a: _Part | None, b: _Part | None) -> bool:
    if a is None or b is None:
        return True
    if a.initial or b.initial:
        return _prefix(a, b)
    stems_a, stems_b = _surname_stems(a.text), _surname_stems(b.text)
    # Иванова-Петрова keeps both her surnames; either alone is hers.
    return stems_a == stems_b or stems_a <= stems_b or stems_b <= stems_a


@lru_cache(maxsize=CACHE)
def _surname_stems(text: str) -> frozenset[str]:
    whole = surname_stem(skeleton(text))
    parts = [p for p in text.split("-") if p]
    if len(parts) < 2:
        return frozenset({whole})
    return frozenset(surname_stem(skeleton(p)) for p in parts)


def _middle_compatible(a: _Part | None, b: _Part | None) -> bool:
    if a is None or b is None:
        return True
    if a.initial or b.initial:
        return _prefix(a, b)
    return a.skeleton == b.skeleton


@lru_cache(maxsize=CACHE)
def _readings_of(name: Name) -> tuple[_Parsed, ...]:
    """The ways a name can be read: as its fields say, and with a surname typed as the first name (or the
    other way round), which CRMs and forms get wrong all the time."""
    p = _parse(name)
    out = [p]
    if p.first is not None and p.last is not None:
        if not p.first.initial and not p.last.initial:
            out.append(_Parsed(p.last, p.first, p.middle))
    elif p.first is not None and not p.first.initial and p.first.skeleton not in _FORMS:
        out.append(_Parsed(None, p.first, p.middle))  # "Петрова" alone in the first-name field
    elif p.last is not None and not p.last.initial and p.last.skeleton in _FORMS:
        out.append(_Parsed(p.last, None, p.middle))  # "Иван" alone in the surname field
    return tuple(out)


def _same(a: _Parsed, b: _Parsed) -> bool:
    return (_first_compatible(a, b) and _last_compatible(a.last, b.last)
            and _middle_compatible(a.middle, b.middle))


def _pairs(a: Name, b: Name) -> Iterator[tuple[_Parsed, _Parsed]]:
    """Pairs of readings to compare, the names as typed first. One side is always read as typed: reading
    both the other way round would compare first names by the surname rule (Валентин Ким would pass for
    Валентина Ким)."""
    ra, rb = _readings_of(a), _readings_of(b)
    yield ra[0], rb[0]
    for x in ra[1:]:
        yield x, rb[0]
    for y in rb[1:]:
        yield ra[0], y


def _complete(p: _Parsed) -> bool:
    return p.first is not None and p.last is not None and not p.last.initial


def compatible(a: Name, b: Name) -> bool:
    """Nothing in the two names says they are different people (an empty name contradicts nothing)."""
    if a == b or _parse(a).empty or _parse(b).empty:
        return True
    return any(_same(pa, pb) for pa, pb in _pairs(a, b))


def agree(a: Name, b: Name) -> bool:
    """The names positively say one person: both have a surname and a first name (an initial counts
    for the first name), they are compatible, and the surnames are not one family's two gender forms.

    Кузнецов and Кузнецова are compatible (a manager types a woman's surname in its male form), but
    they do not say one person: Саша Кузнецов and Саша Кузнецова, or В. Григорьев and В. Григорьева
    on a household's landline, are a husband and a wife, a brother and a sister.
    """
    return any(_complete(pa) and _complete(pb) and _same(pa, pb) and not _other_gender(pa.last, pb.last)
               for pa, pb in _pairs(a, b))


def _other_gender(a: _Part | None, b: _Part | None) -> bool:
    """Two forms of one surname that differ in its gender ending (Кузнецов / Кузнецова, Толстой / Толстая)."""
    if a is None or b is None or a.initial or b.initial or a.skeleton == b.skeleton:
        return False
    if "-" in a.text or "-" in b.text:
        return False  # Иванова-Петрова against Петрова: her own double surname, not another person's
    return surname_stem(a.skeleton) == surname_stem(b.skeleton)


@lru_cache(maxsize=CACHE)
def keys(name: Name) -> frozenset[str]:
    """Every bucket a name may belong to: two names that `agree` always share one, so only names in one
    bucket need comparing. Слава Попов is in "popov v", "popov ia", "popov s"…; Иванова-Петрова in the buckets
    of each of her surnames; a name whose order is unclear in the buckets of both readings."""
    out: set[str] = set()
    for p in _readings_of(name):
        if p.first is None or p.last is None or p.last.initial:
            continue
        stems = _surname_stems(p.last.text) | {surname_stem(p.last.skeleton)}
        letters = {_FULL_PARTS[full].skeleton[0] for full in _FORMS.get(p.first.skeleton, _NONE)}
        letters.add(p.first.skeleton[0])
        out.update(f"{stem} {letter}" for stem in stems for letter in letters)
    return frozenset(out)

