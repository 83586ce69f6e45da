"""The resource monitor and the resource types: what runs a group's resources on the node that owns it.

Map of the package (each module's docstring has the detail):

- ``monitor``   ResourceMonitor: carries out the core's ResourceActions, one serialized queue per
                resource, and reports back (ResourceReport), including unsolicited failures
- ``base``      the resource-DLL interface every type implements, and what the monitor lends it
- ``catalog``   resource type name -> implementation
- ``disk``      Physical Disk: SCSI-2 challenge on online, defender while online, release on offline
- ``network``   IP Address (binds the virtual IP, serves the client endpoint) and Network Name
- ``process``   Generic Application: a watched child process
- ``services``  MSDTC and the Exchange 2003 services, emulated (start-up time, log replay, FailMode)
- ``registry``  the states of the resources this node runs, by group (what clients are told)
- ``endpoint``  the client endpoint on a virtual IP: ``status`` requests
- ``names``     the name service on every node's public address: ``resolve`` requests
- ``udpjson``   JSON over UDP, one datagram each way, bounded and crash-proof
"""

from nodeagent.runtime.resources.monitor import ResourceMonitor
from nodeagent.runtime.resources.names import NAME_PORT, NameService, NameTable

__all__ = ["NAME_PORT", "NameService", "NameTable", "ResourceMonitor"]
