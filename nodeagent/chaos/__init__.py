"""``wolfpack chaos``: a seeded random fault schedule on real node processes, and a checker of the result.

plan.py draws the schedule (the simulator's ``plan_faults``, so ``wolfpack simulate --chaos-seed S``
replays the same network and process faults), runner.py applies it to a real cluster with a client
running, history.py turns the event logs, the runner's own action log and the disks' reservation
histories into intervals, and checker.py (pure) checks the safety and recovery rules on them.
"""
