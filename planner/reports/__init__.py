"""Reports for people and tools: the preview, compare, diff, capacity advice and the HTML
report (charts of a plan, or of a diff's two plans).

Reports read plans; compare and the capacity advice also plan again (through
``planner.planning``) to answer what-if questions. Nothing below imports them.
"""
