"""Resource type name -> implementation: the resource DLLs this monitor can load.

The names are exactly those of ``nodeagent.core.admin.RESOURCE_TYPES`` (CONTRACT3.md); a type the
catalog does not know fails its online with "unknown resource type".
"""

from __future__ import annotations

from nodeagent.runtime.resources.base import Resource
from nodeagent.runtime.resources.disk import PhysicalDisk
from nodeagent.runtime.resources.network import IpAddress, NetworkName
from nodeagent.runtime.resources.process import GenericApplication
from nodeagent.runtime.resources.services import service_classes

Catalog = dict[str, type[Resource]]


def default_catalog() -> Catalog:
    catalog: Catalog = {
        PhysicalDisk.rtype: PhysicalDisk,
        IpAddress.rtype: IpAddress,
        NetworkName.rtype: NetworkName,
        GenericApplication.rtype: GenericApplication,
    }
    catalog.update(service_classes())
    return catalog
