"""The shipped scenario library: one TOML file per situation of MSCS.md (see nodeagent.scenario)."""
