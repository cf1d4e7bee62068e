"""Reports for people and tools: the preview, compare, diff and capacity advice.

Reports read plans; compare and the capacity advice also plan again (through
``planner.planning``) to answer what-if questions. Nothing below imports them.
"""
