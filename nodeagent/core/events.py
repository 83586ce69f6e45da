"""The event catalogue: every kind of event-log record the core writes, with its MSCS id and text.

Theory of operation
-------------------
``event(kind, node, **fields)`` builds an ``Event`` from this table: the MSCS event id where Windows
has one (1061, 1062, 1122, 1123, 1126, 1135, 1177), and a sentence in the words of the Windows event
log, filled from the fields. The fields travel with the record too, so tests and tools read them
instead of parsing the sentence. Keeping the catalogue in one place keeps ids and wording consistent
and gives the README its list.
"""

from __future__ import annotations

from typing import Any

from nodeagent.core.effects import Event

CATALOGUE: dict[str, tuple[int | None, str]] = {
    "service_started": (None, "The Cluster Service started on {node} (incarnation {incarnation})."),
    "service_stopped": (None, "The Cluster Service on {node} was stopped by the operator."),
    "service_restarting": (None, "The Cluster Service on {node} is restarting after a halt."),
    "node_paused": (None, "Cluster node {node} was paused."),
    "node_resumed": (None, "Cluster node {node} was resumed."),
    "interface_failed": (1123, "The node ({node}) lost communication with {peer} on network '{network}'."),
    "interface_up": (1122, "The node ({node}) is now communicating with {peer} on network '{network}'."),
    "regroup_started": (1126, "The Cluster Service on {node} started a regroup of epoch {epoch}: {reason}."),
    "arbitration_started": (None, "{node} is arbitrating for quorum disk {disk} ({reason})."),
    "arbitration_won": (None, "{node} won the arbitration for quorum disk {disk} after {waited_s} s."),
    "arbitration_lost": (None, "{node} lost the arbitration for quorum disk {disk}: {reason}."),
    "quorum_online": (None, "The quorum resource is online on {node}."),
    "proposal_retry": (None, "Epoch {epoch} was not acknowledged by {dropped}; proposing without them."),
    "node_removed": (
        1135,
        "Cluster node {peer} was removed from the active server cluster membership. The Cluster service "
        "may have been stopped on the node, the node may have failed, or the node may have lost "
        "communication with the other active server cluster nodes.",
    ),
    "node_joined": (None, "Cluster node {peer} joined the active server cluster membership."),
    "cluster_formed": (1061, "The Cluster Service successfully formed the server cluster {cluster}."),
    "cluster_joined": (1062, "The Cluster Service successfully joined the server cluster {cluster}."),
    "membership_installed": (None, "Membership epoch {epoch}: {members}; quorum owner {quorum_owner}."),
    "resource_state": (None, "Resource {resource} (group {group}) is {state} on {node}."),
    "resource_failed": (1069, "Cluster resource '{resource}' in Resource Group '{group}' failed: {reason}."),
    "address_conflict": (
        1049,
        "Cluster IP address resource '{resource}' cannot be brought online because an address conflict "
        "was detected on the network: {reason}.",
    ),
    "group_moving": (None, "Group {group} is moving from {source} to {target}: {reason}."),
    "group_owner": (None, "Group {group} is now owned by {owner} ({reason})."),
    "group_failed": (None, "Group {group} is left failed on {owner}: {reason}."),
    "group_retry": (None, "Group {group} is tried again on {owner}: {reason}."),
    "exchange_setup": (None, "Exchange {version} setup {stage} on {target}."),
    "halted": (
        1177,
        "The Cluster Service on {node} is shutting down because quorum was lost or the node was removed "
        "from the cluster: {reason}. It restarts in {restart_s} s.",
    ),
}


def event(kind: str, node: str, **fields: Any) -> Event:
    event_id, template = CATALOGUE[kind]
    text = {k: ", ".join(map(str, v)) if isinstance(v, list | tuple) else v for k, v in fields.items()}
    message = template.format(node=node, **text)
    return Event(kind, event_id, message, fields)
