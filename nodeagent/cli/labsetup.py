"""`wolfpack up --evs K`: build the standard Exchange 2003 lab in one go, by the setup rules.

Theory of operation
-------------------
The same admin requests an operator would type, in the order MSCS.md prescribes:
1. MSDTC first (in the Cluster Group);
2. Exchange setup on every node, one node at a time, each waited for (each takes the cluster
   property ExchangeSetupTime, 30 Windows seconds unless ``--exchange-setup-s`` sets it);
3. K virtual servers ``EVS1``..``EVSk``, each with its disk, IP address, network name and the
   System Attendant, which creates the other Exchange resources; each gets one preferred owner,
   round robin over the nodes, and failback is prevented (the recommended settings);
4. each EVS group brought online, waited for until it is Online.

Every step is skipped when it is already done, so running it again on a built lab is harmless.
The cluster refuses what the rules forbid (more than N-1 virtual servers on more than 2 nodes,
say) with its usual one-line error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from nodeagent.cli import evscmd
from nodeagent.cli.admincmd import Admin
from nodeagent.cli.clusterdir import ClusterDir


def build_standard_lab(
    adm: Admin,
    cdir: ClusterDir,
    evs_count: int,
    version: str,
    progress: Callable[[str], None],
    setup_s: float | None = None,
) -> dict[str, Any]:
    nodes = [n.name for n in sorted(adm.config.nodes, key=lambda n: n.id)]
    if setup_s is not None:  # the cluster property ExchangeSetupTime, in Windows seconds
        adm.call("cluster.prop", {"props": {"ExchangeSetupTime": setup_s}})
    status = adm.call("exchange.status", {})
    groups = {g["name"]: g for g in adm.node_status().get("groups", [])}
    has_dtc = any(r.get("type") == "Distributed Transaction Coordinator" for g in groups.values()
                  for r in g.get("resources", []))  # fmt: skip
    if not has_dtc:
        progress("creating MSDTC in the Cluster Group")
        adm.call("msdtc.create", {})
    for node in nodes:
        if status["installed"].get(node) == version:
            continue
        evscmd.install(adm, node, version, progress)
    created = []
    for k in range(1, evs_count + 1):
        name = f"EVS{k}"
        if name not in groups:
            owner = nodes[(k - 1) % len(nodes)]
            progress(f"creating {name} (preferred owner {owner}, Exchange {version} dependency tree)")
            evscmd.evs_create(
                adm, cdir, {"name": name, "preferred_owner": owner, "exchange_version": version}
            )
            created.append(name)
    for k in range(1, evs_count + 1):
        name = f"EVS{k}"
        progress(f"bringing {name} online")
        adm.call("group.online", {"name": name})
        evscmd.wait_for(functools.partial(_online, adm, name), f"{name} to come online")
    return {"created": created, "evs": [f"EVS{k}" for k in range(1, evs_count + 1)], "version": version}


def _online(adm: Admin, name: str) -> bool:
    return any(
        g.get("name") == name and g.get("state") == "Online" for g in adm.node_status().get("groups", [])
    )
