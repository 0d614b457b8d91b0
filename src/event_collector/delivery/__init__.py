"""Delivery: send each stored delivery row at least once to its subscription's destination."""
