"""The trio shell around the pure core: one node as a real OS process.

Map of the package (each module's docstring has the detail):

- ``node``           builds one node (files, sockets, driver, control server) in one root nursery
- ``driver``         owns the ``NodeCore``: the one place core methods are called; carries out each Ready
- ``messenger``      Sends -> authenticated datagrams and datagrams -> core inputs, through the faults
- ``transport``      where datagrams travel: real UDP sockets, or an in-memory network for tests
- ``faults``         the fault rule table (pure): cut a link to a peer on a network
- ``diskexec``       runs the core's disk operations, in order, off the event loop
- ``eventlog``       events.jsonl: the writer, and the reader that merges several nodes' logs
- ``files``          the node directory's small files: incarnation, pid, db.json (atomic writes)
- ``control``        the control socket server (the operator's console)
- ``control_client`` the blocking client the CLI uses to talk to a control socket
"""
