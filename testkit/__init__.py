"""Support code for the tests and the benches, in one place.

Tests import helpers from here, never from another test module; benches import from
here, never from ``tests/``; and production code (``services/``) never imports it.
It sits at the top of the repository, beside ``services/``, so that a bench run as
``python bench/x.py`` imports it the same way a test does (the development
environment's editable install puts the repository root on ``sys.path``); it is not
shipped in the ``citeplus`` wheel, which packages ``services`` only.
"""
