"""Scenario files: a cluster, a list of steps (faults, process actions, waits, asserts), a report.

``model`` parses and validates the TOML, ``conditions`` evaluates wait/assert conditions, ``runner``
starts the cluster and runs the steps, ``report`` renders the outcome. The shipped library lives in
``nodeagent/scenarios/*.toml``.
"""
