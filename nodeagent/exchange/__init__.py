"""The Exchange 2003 service processes: protocol machines, the store on the EVS disk, their trio host.

- storelog.py: the ESE-style transaction log, checkpoint and database regions on the EVS disk.
- mailstore.py: the Information Store's mailbox database and the SMTP queue on top of that log.
- vm.py: the virtual-memory (address space fragmentation) model of the 32-bit store.exe.
"""
