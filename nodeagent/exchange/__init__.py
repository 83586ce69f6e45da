"""The Exchange 2003 service processes: protocol machines, the store on the EVS disk, their trio host."""
