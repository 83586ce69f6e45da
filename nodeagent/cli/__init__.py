"""The ``wolfpack`` command: the operator's console for a lab cluster on this machine.

Theory of operation
-------------------
The command never talks to the cluster over UDP. It works from the cluster directory (see
``clusterdir``): it reads ``cluster.toml``, starts node processes detached from itself
(``launcher``), asks each node about itself through its Unix control socket (``probe``), composes
what the nodes say into one picture (``status``), merges their event logs (``logview``), installs
network faults (``faultcmd``), manages shared disks (``diskcmd``) and runs the deterministic
simulator (``simcmd``). ``main`` builds the argparse parser and turns every ``WolfpackError`` into
one line on stderr and exit code 1.
"""
