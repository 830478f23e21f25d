"""`hpo report`: the report of a study and everything only the report uses.

Imports run one way: the rest of `hpo` never imports this package (tests/test_layout.py),
and the parts here never import its entry point, `hpo.report.writer`.
"""
