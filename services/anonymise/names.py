"""Person names in free values, found by set lookups over runs of capitalised words.

A single common word (``Martin``, ``Rose``, ``Petit``) is no name: streets, stations
and shops carry them. What the net looks for is a *pair* of adjacent capitalised
words that reads as a person:

- a civility and a word: ``M. Dupont``, ``Mme Lefèvre``, ``Madame Petit``,
  ``M. de Weck`` (particles may sit between the words of a run);
- a given name and a word that is no place word: ``Jean Dupont``, ``Jean Zwingli``;
- a word that is no place word and a surname: ``Chloé Dupont``;
- a surname, or a word in capitals, then a given name: ``Dupont Jean``, ``MULLER Anne``.

Given names and surnames are Faker's fr_FR lists (a maintained package already in
the lock), folded once at import (lower case, no accents). The only regular
expression is the run finder; each pair is two set lookups, so the cost does not
grow with the size of the lists. Recall and false positives are measured by
``bench/safety_net.py`` on names Faker generates for other French-speaking locales
(fr_CH, fr_CA), which the lists were not built from.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from faker.providers.person.fr_FR import Provider as _FrenchPeople

_UPPER = "A-ZÀ-ÖØ-Þ"
_WORD = rf"(?:[{_UPPER}][\w'’-]*\.?)"
_PARTICLE = r"(?:de|du|des|d'|d’|le|la|van|von|di|da|dos|del)"
# A run of two or more capitalised words separated by spaces (particles between
# them allowed: "M. de Weck"): where a name can sit.
RUN = re.compile(rf"(?<![\w.]){_WORD}(?:[ \t]+(?:{_PARTICLE}[ \t]*)*{_WORD})+")
_SPLIT = re.compile(rf"[ \t]+(?:{_PARTICLE}[ \t]*)*")
# The same on shapes (services/anonymise/safety_net.py: ASCII letters to A/a), where
# a particle is one to three lower-case letters: a pre-filter that never misses.
SHAPED_RUN = re.compile(rf"(?<![\w.]){_WORD}(?:[ \t]+(?:a{{1,3}}['’]?[ \t]*)*{_WORD})+")


def fold(word: str) -> str:
    """Lower case without accents or a final dot: ``Chloé`` -> ``chloe``."""
    decomposed = unicodedata.normalize("NFKD", word.rstrip(".").casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _folded(words: object) -> frozenset[str]:
    out: set[str] = set()
    for name in words:  # type: ignore[attr-defined]
        out.add(fold(name))
        out.update(fold(part) for part in re.split(r"[ -]", name) if len(part) > 2)
    return frozenset(out)


GIVEN = _folded(_FrenchPeople.first_names)
SURNAMES = _folded(_FrenchPeople.last_names)
CIVILITIES = frozenset(
    {"m", "mr", "mme", "mlle", "monsieur", "madame", "mademoiselle", "me", "maitre", "dr"}
    | {"docteur", "pr", "professeur"}
)
# Words that follow a given name in place names and labels, not surnames
# ("Saint Jean Gare", "Victor Station"); also articles and particles.
PLACE_WORDS = frozenset(
    fold(w)
    for w in [
        "saint",
        "sainte",
        "st",
        "ste",
        "le",
        "la",
        "les",
        "l",
        "de",
        "du",
        "des",
        "d",
        "et",
        "sur",
        "sous",
        "lès",
        "en",
        "aux",
        "au",
        "rue",
        "avenue",
        "av",
        "boulevard",
        "bd",
        "place",
        "pl",
        "chemin",
        "allée",
        "impasse",
        "quai",
        "route",
        "cours",
        "square",
        "passage",
        "voie",
        "sentier",
        "cité",
        "résidence",
        "lotissement",
        "hameau",
        "faubourg",
        "esplanade",
        "promenade",
        "parvis",
        "traverse",
        "montée",
        "ruelle",
        "villa",
        "domaine",
        "rond-point",
        "pont",
        "porte",
        "parc",
        "jardin",
        "gare",
        "station",
        "arrêt",
        "centre",
        "mairie",
        "église",
        "école",
        "collège",
        "lycée",
        "hôpital",
        "hôtel",
        "château",
        "résidence",
        "port",
        "plage",
        "mont",
        "bois",
        "moulin",
        "stade",
        "marché",
        "halles",
        "musée",
        "théâtre",
        "piscine",
        "gymnase",
        "parking",
        "tour",
        "tours",
        "nord",
        "sud",
        "est",
        "ouest",
        "haut",
        "bas",
        "grand",
        "grande",
        "petit",
        "petite",
        "vieux",
        "neuf",
        "neuve",
        "nouveau",
        "nouvelle",
        "centre-ville",
        "ville",
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
        "lundi",
        "mardi",
        "mercredi",
        "jeudi",
        "vendredi",
        "samedi",
        "dimanche",
        "métro",
        "tram",
        "tramway",
        "bus",
        "ligne",
        "zone",
        "secteur",
        "quartier",
        "bâtiment",
        "entrée",
        "sortie",
        "niveau",
        "SO",
        "NE",
        "NO",
        "SE",
        "N",
        "S",
        "E",
        "O",
    ]
)


_ARTICLES = frozenset({"le", "la", "les", "l", "de", "du", "des", "d"})
_SAINTS = frozenset({"saint", "sainte", "st", "ste"})


def _given(folded: str) -> bool:
    return folded in GIVEN or folded.split("-", 1)[0] in GIVEN


def _pair_is_name(first: str, second: str) -> bool:
    a, b = fold(first), fold(second)
    if len(a) < 1 or len(b) < 2 or a in PLACE_WORDS or b in PLACE_WORDS:
        return False
    if a in CIVILITIES or _given(a):
        return True  # "Mme Zwingli", "Jean Dupont", "Jean Zwingli"
    if b in SURNAMES:
        return len(a) > 1  # "Chloé Dupont"
    if _given(b) and len(a) > 1:
        return a in SURNAMES or (first.isupper() and first.isalpha())  # "DURAND Sylvie"
    return False


@lru_cache(maxsize=65_536)
def run_has_name(run: str) -> bool:
    """Whether a run of capitalised words holds a person's name (cached: runs recur)."""
    words = [word for word in _SPLIT.split(run) if fold(word) not in _ARTICLES]
    if any(fold(word) in CIVILITIES for word in words[:-1]):
        return True  # "M. Petit", "Mme Le Goff": whatever the civility names
    folded = [fold(word) for word in words]
    return any(
        _pair_is_name(words[i], words[i + 1])
        for i in range(len(words) - 1)
        if not (i and folded[i - 1] in _SAINTS)  # "Saint Jean Baptiste" is a place's saint
    )


def has_name(text: str) -> bool:
    """Whether ``text`` names a person (see the module docstring for what counts)."""
    return any(run_has_name(m.group()) for m in RUN.finditer(text))
