"""Person names in free values, found by set lookups over runs of capitalised words.

A single common word (``Martin``, ``Rose``, ``Petit``) is no name: streets, stations
and shops carry them. What the net looks for is a *pair* of adjacent capitalised
words that reads as a person:

- a civility and a word: ``M. Dupont``, ``Mme Lefèvre``, ``Madame Petit``;
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
from itertools import pairwise

from faker.providers.person.fr_FR import Provider as _FrenchPeople

_UPPER = "A-ZÀ-ÖØ-Þ"
_WORD = rf"(?:[{_UPPER}][\w'’-]*\.?)"
# A run of two or more capitalised words separated by spaces: where a name can sit.
RUN = re.compile(rf"(?<![\w.]){_WORD}(?:[ \t]+{_WORD})+")
_SPLIT = re.compile(r"[ \t]+")


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
    words = _SPLIT.split(run)
    return any(_pair_is_name(a, b) for a, b in pairwise(words))


def has_name(text: str) -> bool:
    """Whether ``text`` names a person (see the module docstring for what counts)."""
    return any(run_has_name(m.group()) for m in RUN.finditer(text))
