# ruff: noqa: RUF001
"""How each letter language greets and addresses a person.

German business mail greets with "Frau"/"Herr" and the last name, and without knowing
which, neutrally (never "Hallo Katrin" followed by "Sie"). Polish addresses a person as
Pani/Pan with the first name in the vocative ("Pani Anno", "Panie Piotrze"), and plural
"Państwo" when we do not know who reads; the vocative comes from a table of common names,
since a rule would get many of them wrong. Russian and English greet by first name.
"""

from __future__ import annotations

from typing import Literal

Gender = Literal["female", "male"]

# Salutations as CRMs store them, in the four letter languages (Cyrillic on purpose).
_FEMALE = frozenset("f female w weiblich frau mrs ms miss madam pani г-жа госпожа ж жен".split())  # noqa: SIM905
_MALE = frozenset("m male männlich maennlich herr mr sir pan г-н господин м муж".split())  # noqa: SIM905

# Common Polish first names → vocative. Women's names are female, the rest male.
_POLISH_FEMALE = {
    "agata": "Agato",
    "agnieszka": "Agnieszko",
    "aleksandra": "Aleksandro",
    "alicja": "Alicjo",
    "aneta": "Aneto",
    "anna": "Anno",
    "barbara": "Barbaro",
    "beata": "Beato",
    "bożena": "Bożeno",
    "danuta": "Danuto",
    "dominika": "Dominiko",
    "dorota": "Doroto",
    "edyta": "Edyto",
    "elżbieta": "Elżbieto",
    "emilia": "Emilio",
    "ewa": "Ewo",
    "ewelina": "Ewelino",
    "grażyna": "Grażyno",
    "halina": "Halino",
    "hanna": "Hanno",
    "irena": "Ireno",
    "iwona": "Iwono",
    "izabela": "Izabelo",
    "jadwiga": "Jadwigo",
    "janina": "Janino",
    "joanna": "Joanno",
    "jolanta": "Jolanto",
    "julia": "Julio",
    "justyna": "Justyno",
    "karolina": "Karolino",
    "katarzyna": "Katarzyno",
    "krystyna": "Krystyno",
    "lena": "Leno",
    "magdalena": "Magdaleno",
    "małgorzata": "Małgorzato",
    "maria": "Mario",
    "marta": "Marto",
    "marzena": "Marzeno",
    "monika": "Moniko",
    "natalia": "Natalio",
    "patrycja": "Patrycjo",
    "paulina": "Paulino",
    "renata": "Renato",
    "sylwia": "Sylwio",
    "teresa": "Tereso",
    "urszula": "Urszulo",
    "weronika": "Weroniko",
    "wiktoria": "Wiktorio",
    "zofia": "Zofio",
    "zuzanna": "Zuzanno",
}
_POLISH_MALE = {
    "adam": "Adamie",
    "adrian": "Adrianie",
    "aleksander": "Aleksandrze",
    "andrzej": "Andrzeju",
    "antoni": "Antoni",
    "arkadiusz": "Arkadiuszu",
    "artur": "Arturze",
    "bartosz": "Bartoszu",
    "bogdan": "Bogdanie",
    "czesław": "Czesławie",
    "damian": "Damianie",
    "daniel": "Danielu",
    "dariusz": "Dariuszu",
    "dawid": "Dawidzie",
    "filip": "Filipie",
    "grzegorz": "Grzegorzu",
    "henryk": "Henryku",
    "hubert": "Hubercie",
    "igor": "Igorze",
    "jacek": "Jacku",
    "jakub": "Jakubie",
    "jan": "Janie",
    "janusz": "Januszu",
    "jarosław": "Jarosławie",
    "jerzy": "Jerzy",
    "józef": "Józefie",
    "kacper": "Kacprze",
    "kamil": "Kamilu",
    "karol": "Karolu",
    "kazimierz": "Kazimierzu",
    "konrad": "Konradzie",
    "krzysztof": "Krzysztofie",
    "leszek": "Leszku",
    "łukasz": "Łukaszu",
    "maciej": "Macieju",
    "marcin": "Marcinie",
    "marek": "Marku",
    "mariusz": "Mariuszu",
    "mateusz": "Mateuszu",
    "michał": "Michale",
    "mirosław": "Mirosławie",
    "patryk": "Patryku",
    "paweł": "Pawle",
    "piotr": "Piotrze",
    "przemysław": "Przemysławie",
    "rafał": "Rafale",
    "robert": "Robercie",
    "roman": "Romanie",
    "ryszard": "Ryszardzie",
    "sebastian": "Sebastianie",
    "sławomir": "Sławomirze",
    "stanisław": "Stanisławie",
    "szymon": "Szymonie",
    "tadeusz": "Tadeuszu",
    "tomasz": "Tomaszu",
    "waldemar": "Waldemarze",
    "wiesław": "Wiesławie",
    "wojciech": "Wojciechu",
    "zbigniew": "Zbigniewie",
}

# Polish courtesy forms by case: "dziękujemy {{ you.dat }}", "{{ you.gen }} opinia".
# `past` ends a past-tense verb: "polecił{{ … }}" is wrong, "poleci{{ you.past }}" right.
_POLISH_FORMS: dict[str | None, dict[str, str]] = {
    "female": {
        "nom": "Pani",
        "gen": "Pani",
        "dat": "Pani",
        "acc": "Panią",
        "ins": "Panią",
        "loc": "Pani",
        "past": "ła",
    },
    "male": {
        "nom": "Pan",
        "gen": "Pana",
        "dat": "Panu",
        "acc": "Pana",
        "ins": "Panem",
        "loc": "Panu",
        "past": "ł",
    },
    None: {
        "nom": "Państwo",
        "gen": "Państwa",
        "dat": "Państwu",
        "acc": "Państwa",
        "ins": "Państwem",
        "loc": "Państwu",
        "past": "li",
    },
}


def gender_of(salutation: str | None) -> Gender | None:
    """ "Frau", "Mrs", "Pani", "female", "f" → female; "Herr", "Mr", "Pan", "m" → male."""
    if not salutation:
        return None
    word = salutation.strip().lower().rstrip(".")
    if word in _FEMALE:
        return "female"
    if word in _MALE:
        return "male"
    return None


def polish_vocative(first_name: str | None) -> tuple[str, Gender] | None:
    if not first_name:
        return None
    key = first_name.split()[0].lower()
    if key in _POLISH_FEMALE:
        return _POLISH_FEMALE[key], "female"
    if key in _POLISH_MALE:
        return _POLISH_MALE[key], "male"
    return None


def polish_forms(first_name: str | None, salutation: str | None) -> dict[str, str]:
    """Pani/Pan/Państwo in every case: the salutation decides, else the name table."""
    gender = gender_of(salutation)
    if gender is None:
        found = polish_vocative(first_name)
        gender = found[1] if found else None
    return dict(_POLISH_FORMS[gender])


def greeting(
    lang: str, first_name: str | None, last_name: str | None, salutation: str | None
) -> str:
    """The letter's first line, punctuation included."""
    gender = gender_of(salutation)
    if lang == "de":
        if gender and last_name:
            return f"Guten Tag {'Frau' if gender == 'female' else 'Herr'} {last_name},"
        if first_name and last_name:
            return f"Guten Tag {first_name} {last_name},"
        return "Guten Tag,"
    if lang == "pl":
        found = polish_vocative(first_name)
        if found and (gender is None or gender == found[1]):
            title = "Pani" if found[1] == "female" else "Panie"
            return f"Dzień dobry, {title} {found[0]}!"
        return "Dzień dobry!"
    if lang == "ru":
        return f"Здравствуйте, {first_name}!" if first_name else "Здравствуйте!"
    return f"Dear {first_name}," if first_name else "Hello,"
