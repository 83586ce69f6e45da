"""The monitor's table of the resources it has run on this node, with their states, by group.

Theory of operation
-------------------
The resource monitor writes each resource's state here as its actions progress (Online Pending,
Online, Offline Pending, Offline, Failed); the client endpoint of a group's IP Address reads it to
answer a client's ``status`` with the group's services and their states *on this node*. It is the
runtime's own view, not the cluster database's: the core keeps the replicated truth, this table only
says what the local monitor is doing. Entries stay after a resource goes offline (a client asking
for POP3 learns it is Offline rather than unknown) and are bounded by ``MAX_ENTRIES``; the oldest
offline entry makes room for a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ENTRIES = 1024


@dataclass(slots=True)
class Entry:
    resource: str
    group: str
    rtype: str
    service: str | None  # the key clients see (None: not listed in status replies)
    state: str
    detail: str = ""


class ResourceRegistry:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: dict[str, Entry] = {}
        self._max = max_entries

    def set(
        self, resource: str, group: str, rtype: str, service: str | None, state: str, detail: str = ""
    ) -> None:
        entry = self._entries.pop(resource, None)  # re-inserted last: dict order is recency
        if entry is None:
            self._make_room()
            entry = Entry(resource, group, rtype, service, state, detail)
        entry.group, entry.rtype, entry.service, entry.state, entry.detail = (
            group,
            rtype,
            service,
            state,
            detail,
        )
        self._entries[resource] = entry

    def set_state(self, resource: str, state: str, detail: str = "") -> None:
        entry = self._entries.get(resource)
        if entry is not None:
            entry.state, entry.detail = state, detail

    def get(self, resource: str) -> Entry | None:
        return self._entries.get(resource)

    def services(self, group: str) -> dict[str, str]:
        """{service key: state} of the group's services on this node, in a stable order."""
        found = {e.service: e.state for e in self._entries.values() if e.group == group and e.service}
        return dict(sorted(found.items()))

    def entries(self) -> list[Entry]:
        return sorted(self._entries.values(), key=lambda e: (e.group, e.resource))

    def _make_room(self) -> None:
        while len(self._entries) >= self._max:
            victim = next((k for k, e in self._entries.items() if e.state == "Offline"), None)
            if victim is None:
                victim = next(iter(self._entries))
            del self._entries[victim]
