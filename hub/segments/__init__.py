"""Segments: named rules over the customer base, compiled to SQL and kept current.

rules (the language: parse and check), fields (what a rule may ask about),
compile (rules to SQL), portable (the SQL that differs between databases),
lifecycle (customer-base stages), scoring (lead score), store (saved and
built-in segments), evaluate (who is in a segment now), membership (refresh,
and who entered or left), explain (why a contact is in or out), reference
(the same language evaluated in plain Python, to check the SQL against),
commands (`hub segments`).
"""
