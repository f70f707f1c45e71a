"""energy-analytics: windowed energy aggregates with statistical secrecy (see stage.py)."""
