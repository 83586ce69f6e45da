"""The lab's directory: the computer objects Network Names with RequireKerberos=1 get (a tiny AD).

Theory of operation
-------------------
With ``RequireKerberos=1`` an MSCS Network Name creates (or reuses) a computer object for its name
in Active Directory when it comes online, so that Kerberos clients can authenticate to the virtual
server; Exchange 2003 on Windows 2003 requires it, and its System Attendant will not start without
it. The lab's directory is one file, ``DIR/directory.json``, shared by the nodes the way a domain
controller is shared by the cluster:

    {"computers": {"EVS1": {"name": "EVS1", "dns_name": "evs1.wolfpack.lab",
                            "created_by": "NODE1", "created_at": "2026-12-04T15:01:02Z"}}}

Objects are created once and then reused: a failover does not recreate it, and taking the name
offline does not delete it (as in AD; deleting is an admin's act, the file can be edited). Writes
are read-modify-write under an exclusive ``flock`` on ``directory.json.lock`` (two nodes may bring
names online at once) and land atomically (files.atomic_write_text), so a reader sees the old file
or the new one. Names are compared without regard to case, as NetBIOS names. The file is bounded
(``MAX_COMPUTERS``); an unreadable file is an error the caller reports, never silently replaced.
"""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path
from typing import Any

from nodeagent.errors import WolfpackError
from nodeagent.runtime.files import atomic_write_text

DIRECTORY_FILE = "directory.json"
MAX_COMPUTERS = 1024


class DirectoryError(WolfpackError):
    """The directory file cannot be read or written; the message says why."""


class Directory:
    def __init__(self, path: Path) -> None:
        self.path = path

    def computers(self) -> dict[str, dict[str, Any]]:
        """Every computer object, by name as created."""
        return dict(self._read().get("computers", {}))

    def has_computer(self, name: str) -> bool:
        return any(key.upper() == name.upper() for key in self.computers())

    def ensure_computer(self, name: str, dns_name: str, by: str) -> bool:
        """Create the computer object for ``name`` unless it exists; True when it was created now."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            with lock_path.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                data = self._read()
                computers: dict[str, Any] = data.setdefault("computers", {})
                if any(key.upper() == name.upper() for key in computers):
                    return False
                if len(computers) >= MAX_COMPUTERS:
                    raise DirectoryError(f"directory full: at most {MAX_COMPUTERS} computer objects")
                computers[name] = {
                    "name": name,
                    "dns_name": dns_name,
                    "created_by": by,
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                atomic_write_text(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")
                return True
        except OSError as e:
            raise DirectoryError(f"cannot write {self.path}: {e.strerror or e}") from None

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {"computers": {}}
        except OSError as e:
            raise DirectoryError(f"cannot read {self.path}: {e.strerror or e}") from None
        try:
            data = json.loads(text)
        except ValueError:
            raise DirectoryError(f"{self.path} is not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("computers", {}), dict):
            raise DirectoryError(f"{self.path}: expected {{\"computers\": {{...}}}}")
        return data
