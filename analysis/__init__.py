"""Results: the result file format, reading results back, and what is derived from them alone (the tidy tables, the claims table)."""
