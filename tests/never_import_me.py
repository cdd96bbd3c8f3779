"""A module that must never be imported: a job row names an attribute of it."""

raise RuntimeError("tests.never_import_me was imported because a job row named it")

thing = None
