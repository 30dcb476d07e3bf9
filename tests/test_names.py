"""Names compared as Russians write them: what says one person, what says two."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub import names
from hub.names import Name, agree, compatible, keys


def both_ways(a: Name, b: Name) -> tuple[bool, bool]:
    """compatible and agree, checked to be symmetric."""
    assert compatible(a, b) == compatible(b, a)
    assert agree(a, b) == agree(b, a)
    return compatible(a, b), agree(a, b)


PETR = Name(first="Пётр", last="Соколов")

# Pairs that are one person written two ways: compatible, agree, and one bucket.
SAME_PERSON = [
    # case, spaces, ё/е, hyphens
    (Name(first="ПЁТР", last="  соколов "), PETR),
    (Name(first="Петр", last="Соколов"), PETR),
    (Name(first="Семен", last="Ёлкин"), Name(first="Семён", last="Елкин")),
    (Name(first="Анна-Мария", last="Римская-Корсакова"), Name(first="анна-мария", last="римская-корсакова")),
    # name order, and the whole name in one part
    (Name(first="Иванов", last="Иван"), Name(first="Иван", last="Иванов")),
    (Name(first="Иванов Иван"), Name(first="Иван", last="Иванов")),
    (Name(last="Иванов Иван Петрович"), Name(first="Иван", last="Иванов", middle="Петрович")),
    (Name(first="Иван Петрович Иванов"), Name(first="Иван", last="Иванов", middle="Петрович")),
    (Name(first="Иван Петрович", last="Иванов"), Name(first="Иван", last="Иванов", middle="Петрович")),
    (Name(first="Ирина Петрова"), Name(first="Ирина", last="Петрова")),
    (Name(first="Петрова Ирина Олеговна"), Name(first="Ирина", last="Петрова")),
    # initials
    (Name(last="Соколов П."), PETR),
    (Name(first="Соколов П."), PETR),
    (Name(first="П.", last="Соколов"), PETR),
    (Name(first="П", last="Соколов"), PETR),
    (Name(first="П.И. Соколов"), Name(first="Пётр", last="Соколов", middle="Иванович")),
    (Name(first="Соколов П. И."), Name(first="Пётр", last="Соколов", middle="Иванович")),
    (Name(first="P.", last="Sokolov"), PETR),
    (Name(first="А.", last="Иванова"), Name(first="Саша", last="Иванова")),
    # diminutives, colloquial and full forms
    (Name(first="Саша", last="Иванова"), Name(first="Александра", last="Иванова")),
    (Name(first="Саша", last="Иванов"), Name(first="Александр", last="Иванов")),
    (Name(first="Шура", last="Иванова"), Name(first="Саша", last="Иванова")),
    (Name(first="Саша", last="Шенгелая"), Name(first="Александр", last="Шенгелая")),  # one surname for both
    (Name(first="Саша", last="Щербина"), Name(first="Александр", last="Щербина")),  # a man's surname in -ина
    (Name(first="Слава", last="Калина"), Name(first="Вячеслав", last="Калина")),
    (Name(first="Женя", last="Ким", middle="Сергеевич"), Name(first="Евгений", last="Ким")),
    (Name(first="Ваня", last="Петров"), Name(first="Иван", last="Петров")),
    (Name(first="Катя", last="Орлова"), Name(first="Екатерина", last="Орлова")),
    (Name(first="Женя", last="Орлов"), Name(first="Евгений", last="Орлов")),
    (Name(first="Женя", last="Орлова"), Name(first="Евгения", last="Орлова")),
    (Name(first="Валя", last="Ким"), Name(first="Валентина", last="Ким")),
    (Name(first="Юля", last="Ким"), Name(first="Юлия", last="Ким")),
    (Name(first="Лёша", last="Попов"), Name(first="Алексей", last="Попов")),
    (Name(first="Алёша", last="Попов"), Name(first="Лёша", last="Попов")),
    (Name(first="Дима", last="Попов"), Name(first="Дмитрий", last="Попов")),
    (Name(first="Серёжа", last="Попов"), Name(first="Сергей", last="Попов")),
    (Name(first="Наташа", last="Попова"), Name(first="Наталья", last="Попова")),
    (Name(first="Наталия", last="Попова"), Name(first="Наталья", last="Попова")),
    (Name(first="Таня", last="Попова"), Name(first="Татьяна", last="Попова")),
    (Name(first="Лена", last="Попова"), Name(first="Елена", last="Попова")),
    (Name(first="Оля", last="Попова"), Name(first="Ольга", last="Попова")),
    (Name(first="Света", last="Попова"), Name(first="Светлана", last="Попова")),
    (Name(first="Маша", last="Попова"), Name(first="Мария", last="Попова")),
    (Name(first="Марья", last="Попова"), Name(first="Мария", last="Попова")),
    (Name(first="Настя", last="Попова"), Name(first="Анастасия", last="Попова")),
    (Name(first="Коля", last="Попов"), Name(first="Николай", last="Попов")),
    (Name(first="Миша", last="Попов"), Name(first="Михаил", last="Попов")),
    (Name(first="Паша", last="Попов"), Name(first="Павел", last="Попов")),
    (Name(first="Петя", last="Соколов"), PETR),
    (Name(first="Вова", last="Попов"), Name(first="Владимир", last="Попов")),
    (Name(first="Володя", last="Попов"), Name(first="Вова", last="Попов")),
    (Name(first="Гриша", last="Попов"), Name(first="Григорий", last="Попов")),
    (Name(first="Толя", last="Попов"), Name(first="Анатолий", last="Попов")),
    (Name(first="Костя", last="Попов"), Name(first="Константин", last="Попов")),
    (Name(first="Слава", last="Попов"), Name(first="Вячеслав", last="Попов")),
    (Name(first="Слава", last="Попов"), Name(first="Ярослав", last="Попов")),
    (Name(first="Слава", last="Попова"), Name(first="Владислава", last="Попова")),
    (Name(first="Стас", last="Попов"), Name(first="Станислав", last="Попов")),
    (Name(first="Данила", last="Попов"), Name(first="Даниил", last="Попов")),
    # Latin spellings of Cyrillic names, in several systems, against each other and the original
    (Name(first="Petr", last="Sokolov"), PETR),
    (Name(first="Pyotr", last="Sokolov"), PETR),
    (Name(first="Piotr", last="Sokolov"), PETR),
    (Name(first="Pëtr", last="Sokolov"), PETR),
    (Name(first="Peter", last="Sokolov"), PETR),
    (Name(first="Aleksandr", last="Ivanov"), Name(first="Александр", last="Иванов")),
    (Name(first="Alexander", last="Ivanov"), Name(first="Aleksander", last="Иванов")),
    (Name(first="Evgeniy", last="Orlov"), Name(first="Евгений", last="Орлов")),
    (Name(first="Yevgeny", last="Orlov"), Name(first="Evgenii", last="Orlov")),
    (Name(first="Eugene", last="Orlov"), Name(first="Евгений", last="Орлов")),
    (Name(first="Yulia", last="Kim"), Name(first="Юлия", last="Ким")),
    (Name(first="Julia", last="Kim"), Name(first="Iuliia", last="Kim")),
    (Name(first="Natalia", last="Popova"), Name(first="Наталья", last="Попова")),
    (Name(first="Natalya", last="Popova"), Name(first="Наталия", last="Попова")),
    (Name(first="Sergey", last="Popov"), Name(first="Сергей", last="Попов")),
    (Name(first="Sergei", last="Popov"), Name(first="Serghei", last="Popov")),
    (Name(first="Dmitry", last="Popov"), Name(first="Дмитрий", last="Попов")),
    (Name(first="Dmitriy", last="Popov"), Name(first="Dmitrii", last="Popov")),
    (Name(first="Andrey", last="Popov"), Name(first="Андрей", last="Попов")),
    (Name(first="Andrei", last="Popov"), Name(first="Andrej", last="Popov")),
    (Name(first="Ksenia", last="Popova"), Name(first="Ксения", last="Попова")),
    (Name(first="Kseniya", last="Popova"), Name(first="Xenia", last="Popova")),
    (Name(first="Mariya", last="Popova"), Name(first="Maria", last="Попова")),
    (Name(first="Tatyana", last="Popova"), Name(first="Татьяна", last="Попова")),
    (Name(first="Tatiana", last="Popova"), Name(first="Tatjana", last="Popova")),
    (Name(first="Olga", last="Popova"), Name(first="Ольга", last="Попова")),
    (Name(first="Kirill", last="Popov"), Name(first="Кирилл", last="Попов")),
    (Name(first="Ilya", last="Popov"), Name(first="Илья", last="Попов")),
    (Name(first="Khristina", last="Popova"), Name(first="Христина", last="Попова")),
    (Name(first="Kristina", last="Popova"), Name(first="Кристина", last="Попова")),
    (Name(first="Lyudmila", last="Shchukina"), Name(first="Людмила", last="Щукина")),
    (Name(first="Ludmila", last="Schukina"), Name(first="Ljudmila", last="Ščukina")),
    (Name(first="Fyodor", last="Tsvetkov"), Name(first="Фёдор", last="Цветков")),
    (Name(first="Fedor", last="Tcvetkov"), Name(first="Фёдор", last="Цветков")),
    (Name(first="Mikhail", last="Zhukov"), Name(first="Михаил", last="Жуков")),
    (Name(first="Mihail", last="Žukov"), Name(first="Михаил", last="Жуков")),
    (Name(first="Yuriy", last="Krainiy"), Name(first="Юрий", last="Крайний")),
    (Name(first="Sasha", last="Ivanova"), Name(first="Александра", last="Иванова")),
    (Name(first="Pyotr Sokolov"), PETR),
    (Name(first="Anna Sidorova"), Name(last="Сидорова Анна Викторовна")),
    (Name(first="Alyosha", last="Popov"), Name(first="Алексей", last="Попов")),
    (Name(first="Katya", last="Orlova"), Name(first="Екатерина", last="Орлова")),
    (Name(first="Ye.", last="Orlova"), Name(first="Елена", last="Орлова")),
    (Name(first="Yu.", last="Orlova"), Name(first="Юлия", last="Орлова")),
    (Name(first="Ж.", last="Орлова"), Name(first="Zhanna", last="Orlova")),
    (Name(first="Sokolov P."), PETR),
    # surnames that have one form for both genders, and one gender form in two scripts
    (Name(first="Женя", last="Долгих"), Name(first="Женя", last="Долгих")),
    (Name(first="Женя", last="Шевченко"), Name(first="Женя", last="Шевченко")),
    (Name(first="Yevgenia", last="Tolstaya"), Name(first="Евгения", last="Толстая")),
    (Name(first="Женя", last="Достоевская"), Name(first="Евгения", last="Dostoyevskaya")),
    # a married woman's double surname holds each of her surnames
    (Name(first="Мария", last="Иванова-Петрова"), Name(first="Мария", last="Петрова")),
    (Name(first="Мария", last="Иванова - Петрова"), Name(first="Maria", last="Ivanova-Petrova")),
    # words that are not part of the name
    (Name(first="ИП Соколов П."), PETR),
    (Name(first="г-н Соколов П."), PETR),
    # a missing patronymic
    (Name(first="Иван", last="Петров"), Name(first="Иван", last="Петров", middle="Сергеевич")),
]


@pytest.mark.parametrize(("a", "b"), SAME_PERSON)
def test_one_person_written_two_ways_agrees(a: Name, b: Name) -> None:
    assert both_ways(a, b) == (True, True)


@pytest.mark.parametrize(("a", "b"), SAME_PERSON)
def test_names_that_agree_share_a_bucket(a: Name, b: Name) -> None:
    assert keys(a) & keys(b)


# Pairs nothing contradicts but that do not positively say one person: a part is missing.
COMPATIBLE_ONLY = [
    (Name(first="Саша"), Name(first="Александра")),
    (Name(first="Саша"), Name(first="Александр")),
    (Name(first="Иван"), Name(first="Иван", last="Петров")),
    (Name(last="Петров"), Name(first="Иван", last="Петров")),
    (Name(first="Петрова"), Name(first="Мария", last="Петрова")),  # a surname typed as the first name
    (Name(last="Мария"), Name(first="Мария", last="Петрова")),  # a first name typed as the surname
    (Name(first="Пётр Иванович"), Name(first="Пётр", last="Соколов", middle="Иванович")),
    (Name(first="Иван", last="П."), Name(first="Иван", last="Петров")),
    (Name(first="Petr"), PETR),
    (Name(first="г-н Соколов"), Name(last="Соколов", first="П.")),
    # Two gender forms of one surname: nothing contradicts one person (a woman's surname typed in its
    # male form), but they do not say one person either: a husband and a wife, a brother and a sister.
    (Name(first="Саша", last="Николаев"), Name(first="Саша", last="Николаева")),
    (Name(first="Женя", last="Толстой"), Name(first="Женя", last="Толстая")),
    (Name(first="Женя", last="Крайний"), Name(first="Женя", last="Крайняя")),
    (Name(first="Женя", last="Ильин"), Name(first="Женя", last="Ильина")),
    (Name(first="В.", last="Григорьев"), Name(first="Валентина", last="Григорьева")),
    (Name(first="Кузнецова Саша"), Name(first="Саша", last="Кузнецов")),
    (Name(first="Шамиль", last="Гаджиев"), Name(first="Shamil", last="Gadzhieva")),
    # a man's surname form says nothing of a diminutive: Саша Иванов may be Александра, her surname mistyped
    (Name(first="Саша", last="Иванов"), Name(first="Александра", last="Иванова")),
    # a Belarusian surname in -вич with no other surname is not a patronymic: it says no gender
    (Name(first="Женя Карпович"), Name(first="Евгения", last="Карпович")),
]


@pytest.mark.parametrize(("a", "b"), COMPATIBLE_ONLY)
def test_a_missing_part_contradicts_nothing_but_proves_nothing(a: Name, b: Name) -> None:
    assert both_ways(a, b) == (True, False)


# Pairs that are two people.
DIFFERENT_PEOPLE = [
    # husband and wife: one surname in its two gender forms, two first names
    (Name(first="Иван", last="Николаев"), Name(first="Мария", last="Николаева")),
    (Name(first="Ivan", last="Nikolaev"), Name(first="Мария", last="Николаева")),
    # two colleagues
    (Name(first="Иван", last="Петров"), Name(first="Мария", last="Сидорова")),
    (Name(first="Иван", last="Петров"), Name(first="Иван", last="Сидоров")),
    (Name(first="Иван", last="Петров"), Name(first="Пётр", last="Петров")),
    (Name(first="Иван", last="Петров"), Name(first="Пётр", last="Иванов")),
    # gender: the male and the female full name that share Саша, Женя, Валя
    (Name(first="Александр", last="Иванов"), Name(first="Александра", last="Иванова")),
    (Name(first="Александр"), Name(first="Александра")),
    (Name(first="Aleksandr", last="Ivanov"), Name(first="Александра", last="Иванова")),
    (Name(first="Евгений", last="Орлов"), Name(first="Евгения", last="Орлова")),
    (Name(first="Валентин", last="Ким"), Name(first="Валентина", last="Ким")),
    (Name(first="Юрий", last="Ким"), Name(first="Юлия", last="Ким")),
    # a diminutive of a man's and a woman's name, beside a woman's surname, is hers: a wife and her husband
    (Name(first="Саша", last="Иванова"), Name(first="Александр", last="Иванов")),
    (Name(first="Иванова Саша"), Name(first="Александр", last="Иванов")),
    (Name(first="Sasha", last="Ivanova"), Name(first="Aleksandr", last="Ivanov")),
    (Name(first="Женя", last="Орлова"), Name(first="Евгений", last="Орлов")),
    (Name(first="Слава", last="Попова"), Name(first="Вячеслав", last="Попов")),
    (Name(first="Женя", last="Толстая"), Name(first="Евгений", last="Толстой")),
    (Name(first="Шура", last="Петровская"), Name(first="Саша", last="Петровский", middle="Иванович")),
    (Name(first="Женя", last="Ким", middle="Сергеевна"), Name(first="Евгений", last="Ким")),  # a patronymic tells
    (Name(last="Ким Женя Сергеевич"), Name(first="Евгения", last="Ким")),
    # diminutives of other names
    (Name(first="Саша", last="Иванов"), Name(first="Алексей", last="Иванов")),
    (Name(first="Слава", last="Попов"), Name(first="Владимир", last="Попов")),
    (Name(first="Катя", last="Орлова"), Name(first="Ксения", last="Орлова")),
    # initials that do not fit
    (Name(first="П", last="Соколов"), Name(first="Иван", last="Соколов")),
    (Name(last="Соколов П."), Name(first="Иван", last="Соколов")),
    (Name(first="P.", last="Sokolov"), Name(first="Иван", last="Соколов")),
    (Name(first="И.", last="Соколов"), Name(first="Юрий", last="Соколов")),
    # patronymics, when both are there
    (Name(first="Иван", last="Иванов", middle="Петрович"), Name(first="Иван", last="Иванов", middle="Иванович")),
    (Name(last="Иванов Иван Петрович"), Name(last="Иванов Иван Сергеевич")),
    (Name(first="Иван", last="Иванов", middle="П."), Name(first="Иван", last="Иванов", middle="Сергеевич")),
    # names not in the table: only the same skeleton agrees, a prefix is not enough
    (Name(first="Иван", last="Иванов"), Name(first="Ивангард", last="Иванов")),
    (Name(first="Айгуль", last="Сафина"), Name(first="Айгульнара", last="Сафина")),
    (Name(first="Марат", last="Петров"), Name(first="Мар", last="Петров")),
    (Name(first="Иван", last="Петров"), Name(first="Иван", last="Петровский")),
    # Latin spellings of two different names
    (Name(first="Petr", last="Sokolov"), Name(first="Pavel", last="Sokolov")),
    (Name(first="Dmitry", last="Popov"), Name(first="Denis", last="Popov")),
]


@pytest.mark.parametrize(("a", "b"), DIFFERENT_PEOPLE)
def test_two_people_contradict(a: Name, b: Name) -> None:
    assert both_ways(a, b) == (False, False)


UNKNOWN_SPELLINGS = [
    (Name(first="Айгуль", last="Сафина"), Name(first="Aigul", last="Safina")),
    (Name(first="Тагирбек", last="Ахмедов"), Name(first="ТАГИРБЕК", last="Akhmedov")),
    (Name(first="Шамиль", last="Гаджиев"), Name(first="Shamil", last="Gadzhiev")),
]


@pytest.mark.parametrize(("a", "b"), UNKNOWN_SPELLINGS)
def test_a_name_not_in_the_table_agrees_with_its_own_spellings(a: Name, b: Name) -> None:
    assert both_ways(a, b) == (True, True)


PLACEHOLDERS = ["", "   ", "123", "Клиент", "клиент 4521", "Покупатель", "Contact", "Без имени", "Не указано",
                "—", "-", "?", "Новый клиент", "ООО Ромашка", "Guest"]


@pytest.mark.parametrize("text", PLACEHOLDERS)
def test_what_is_not_a_person_is_empty(text: str) -> None:
    for placeholder in (Name(first=text), Name(last=text), Name(first=text, last=text, middle=text)):
        assert placeholder.empty
        assert both_ways(placeholder, Name(first="Иван", last="Петров")) == (True, False)
        assert both_ways(placeholder, Name(first="Мария", last="Сидорова")) == (True, False)
        assert keys(placeholder) == frozenset()
    assert Name().empty
    assert not Name(first="Иван").empty
    assert not Name(last="Соколов").empty


def test_a_placeholder_word_beside_a_name_is_dropped() -> None:
    assert both_ways(Name(first="Клиент Иван Петров"), Name(first="Иван", last="Петров")) == (True, True)


def test_a_surname_ending_like_a_patronymic_stays_a_surname_in_its_own_field() -> None:
    abramovich = Name(first="Роман", last="Абрамович")
    assert both_ways(abramovich, Name(first="Роман", last="Абрамович")) == (True, True)
    assert both_ways(abramovich, Name(first="Роман", last="Аркадьевич")) == (False, False)


def test_the_table_is_large_and_knows_male_from_female() -> None:
    data = json.loads(names.FORMS_FILE.read_text(encoding="utf-8"))
    assert len(data["male"]) >= 75 and len(data["female"]) >= 75
    assert not set(data["male"]) & set(data["female"])
    assert names.full_names("Саша") == {"Александр", "Александра"}
    assert names.full_names("Женя") == {"Евгений", "Евгения"}
    assert names.full_names("Валя") == {"Валентин", "Валентина"}
    assert {"Вячеслав", "Владислав", "Ярослав", "Станислав"} <= names.full_names("Слава")
    assert names.full_names("Александр") == {"Александр"}
    assert names.full_names("Шмуэль") == frozenset()


def test_no_two_full_names_of_the_table_fold_to_one_skeleton() -> None:
    """Otherwise two different names (or a man's and a woman's) would pass for one."""
    data = json.loads(names.FORMS_FILE.read_text(encoding="utf-8"))
    fulls = [*data["male"], *data["female"]]
    by_skeleton: dict[str, list[str]] = {}
    for full in fulls:
        by_skeleton.setdefault(names.skeleton(full), []).append(full)
    assert {s: f for s, f in by_skeleton.items() if len(f) > 1} == {}


def test_the_table_ships_with_the_package() -> None:
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert names.FORMS_FILE.name in pyproject["tool"]["setuptools"]["package-data"]["hub"]


@pytest.mark.parametrize(("spellings", "skeleton"), [
    (["Пётр", "Petr", "Pyotr", "Piotr", "Pëtr"], "petr"),
    (["Александр", "Aleksandr", "Alexander", "Aleksander", "Alexandr"], "aleksandr"),
    (["Евгений", "Evgeniy", "Yevgeny", "Evgenii", "Evgeny", "Yevgeniy"], "evgeni"),
    (["Юлия", "Yulia", "Julia", "Iuliia", "Yuliya", "Julija"], "iulia"),
    (["Щукин", "Shchukin", "Schukin", "Ščukin"], "schukin"),
    (["Цветков", "Tsvetkov", "Tcvetkov", "Cvetkov"], "tsvetkov"),
    (["Хабибуллин", "Khabibullin", "Habibullin", "Khabibulin"], "habibulin"),
    # "c" as ц, as Russian transliteration tools and CRMs write it ...
    (["Кузнецова", "Kuznetsova", "Kuznecova"], "kuznetsova"),
    (["Савицкий", "Savitskiy", "Savickiy", "Savitskii"], "savitski"),
    (["Цой", "Tsoy", "Coy", "Tsoi"], "tsoi"),
    (["Иванцов", "Ivantsov", "Ivancov"], "ivantsov"),
    (["Луценко", "Lutsenko", "Lucenko"], "lutsenko"),
    (["Царёв", "Tsarev", "Carev"], "tsarev"),
    # ... and as к in the Western spellings of first names and the patronymics made of them
    (["Николай", "Nikolai", "Nicolai", "Nikolay"], "nikolai"),
    (["Виктор", "Viktor", "Victor"], "viktor"),
    (["Константин", "Konstantin", "Constantin"], "konstantin"),
    (["Викторович", "Viktorovich", "Victorovich"], "viktorovich"),
    (["Николаевна", "Nikolaevna", "Nicolaevna"], "nikolaevna"),
    (["Николаев", "Nikolaev", "Nicolaev"], "nikolaev"),  # and the surnames made of them
    (["Марков", "Markov", "Marcov"], "markov"),
    (["Викторова", "Viktorova", "Victorova"], "viktorova"),
])
def test_transliterations_fold_to_one_skeleton(spellings: list[str], skeleton: str) -> None:
    assert {names.skeleton(s) for s in spellings} == {skeleton}


@pytest.mark.parametrize(("male", "female"), [
    ("Николаев", "Николаева"), ("Сидоров", "Сидорова"), ("Кузнецов", "Кузнецова"), ("Иванов", "Иванова"),
    ("Смирнов", "Смирнова"), ("Толстой", "Толстая"), ("Крайний", "Крайняя"), ("Ильин", "Ильина"),
    ("Долгих", "Долгих"), ("Шевченко", "Шевченко"), ("Достоевский", "Достоевская"), ("Sokolov", "Соколова"),
])
def test_gender_forms_of_a_surname_have_one_stem(male: str, female: str) -> None:
    assert names.surname_stem(names.skeleton(male)) == names.surname_stem(names.skeleton(female))


def test_no_bucket_without_a_first_name_and_a_surname() -> None:
    assert keys(Name(first="Иван")) == frozenset()
    assert keys(Name(last="Петров")) == frozenset()
    assert keys(Name(first="Иван", last="П.")) == frozenset()


def test_buckets_tell_apart_what_cannot_agree() -> None:
    assert not keys(Name(first="Иван", last="Петров")) & keys(Name(first="Мария", last="Петрова"))
    assert not keys(Name(first="Иван", last="Петров")) & keys(Name(first="Иван", last="Сидоров"))


def test_an_ambiguous_diminutive_is_in_every_bucket() -> None:
    """Слава may be Вячеслав or Ярослав: a bucket keyed by one initial would miss the other."""
    slava = Name(first="Слава", last="Попов")
    assert keys(Name(first="Вячеслав", last="Попов")) & keys(slava)
    assert keys(Name(first="Ярослав", last="Попов")) & keys(slava)
    assert keys(Name(first="Иван")) == frozenset()


@pytest.mark.parametrize(("a", "b"), DIFFERENT_PEOPLE[:6])
def test_buckets_keep_apart_most_different_people(a: Name, b: Name) -> None:
    assert not keys(a) & keys(b)


WORDS = st.sampled_from(["Иван", "Иванов", "Мария", "Саша", "Александра", "П.", "И.", "Petr", "Sokolova", "Слава",
                         "Клиент", "Петрович", "Ивановна", "Николаева", "Толстая", "-", "123", "ООО", "Анна-Мария"])
PART = st.one_of(st.none(), st.lists(WORDS, min_size=1, max_size=3).map(" ".join), st.text(max_size=12))


@settings(max_examples=300, deadline=None)
@given(PART, PART, PART, PART, PART, PART)
def test_any_two_names_compare_the_same_both_ways(f1: str | None, l1: str | None, m1: str | None,
                                                  f2: str | None, l2: str | None, m2: str | None) -> None:
    a, b = Name(f1, l1, m1), Name(f2, l2, m2)
    assert compatible(a, a)
    assert agree(a, a) == bool(keys(a))
    compatible_, agree_ = both_ways(a, b)
    assert compatible_ or not agree_
    if agree_:
        assert keys(a) & keys(b)


def test_marisha_is_a_form_of_marina_not_of_maria() -> None:
    assert names.agree(names.Name("Марина", "Белова"), names.Name("Мариша", "Белова"))
    assert not names.compatible(names.Name("Мариша"), names.Name("Мария"))
