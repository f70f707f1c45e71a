"""Which form of the catalogue a client gets: JSON-LD (the default) or Turtle.

Harvesters differ: udata and ckanext-dcat read either, OpenDataSoft's DCAT
harvester and RDF tools often ask for Turtle, browsers and JavaScript for JSON.
``?format=`` wins over ``Accept`` (a harvester's form may allow only a URL).
"""

from __future__ import annotations

LD_JSON = "application/ld+json"
TURTLE = "text/turtle"
FORMATS = {"jsonld": LD_JSON, "json-ld": LD_JSON, "json": LD_JSON, "ttl": TURTLE, "turtle": TURTLE}
MEDIA = {
    "application/ld+json": LD_JSON,
    "application/json": LD_JSON,
    "text/turtle": TURTLE,
    "application/x-turtle": TURTLE,
    "application/*": LD_JSON,
    "text/*": TURTLE,
    "*/*": LD_JSON,
}


class NotAcceptable(ValueError):
    """The client asked for a form the catalogue does not come in (status 406 or 400)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def choose(accept: str | None, fmt: str | None) -> str:
    """The media type to answer with; JSON-LD on a tie and when nothing is asked."""
    if fmt is not None:
        media = FORMATS.get(fmt.strip().lower())
        if media is None:
            raise NotAcceptable(
                400, f"format {fmt[:40]!r} is not one of ttl, jsonld (or omit it and use Accept)"
            )
        return media
    if not accept or not accept.strip():
        return LD_JSON
    best, best_q = None, 0.0
    for part in accept.split(",")[:50]:
        media, *params = (p.strip() for p in part.split(";"))
        choice, q = MEDIA.get(media.lower()), _quality(params)
        if choice and q > 0 and (q > best_q or (q == best_q and choice == LD_JSON)):
            best, best_q = choice, q
    if best is None:
        raise NotAcceptable(
            406,
            f"Accept {accept[:80]!r}: the catalogue comes as application/ld+json or "
            "text/turtle (or ask with ?format=jsonld|ttl)",
        )
    return best


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0
