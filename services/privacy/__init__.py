"""privacy: the city secrets that hide who a meter is, shared below the stages.

``keys`` (per-city keyrings, epoch keys, the dev node's keyrings), ``pseudonym``
(keyed HMAC pseudonyms) and ``entropy`` (the guard against guessable secrets).
Anonymise pseudonymises records with them; ingest names the meter of a redacted
dead letter with the same keys. Neither stage imports the other.
"""
