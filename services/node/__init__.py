"""The node: the five services as supervised processes on one machine, and the
operator commands around them (up, down, status, logs, replay, demo)."""
