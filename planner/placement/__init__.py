"""Placement: a spec in, a ``Placement`` out.

Grouping, slicing, upstream's three strategies and ``auto``, merging and fusing: where
every table's pieces go, decided from the spec alone. Nothing here writes a plan; the
placement is written out as one by ``planner.describe``.
"""
