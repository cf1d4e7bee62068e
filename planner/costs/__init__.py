"""What a plan costs: bytes per rank, traffic per step, and their totals.

Cost code reads plans (and the plain numbers a strategy hands it to score a candidate);
it never places tables or makes a plan, so every stage above may use it.
"""
