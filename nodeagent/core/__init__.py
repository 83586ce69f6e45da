"""The cluster service as pure state machines: no trio, sockets, os, time or random in here.

Public surface: ``NodeCore`` (core/node.py), its inputs and effects (core/effects.py), messages
(core/messages.py) and ``NodeSnapshot`` (core/snapshot.py).
"""
