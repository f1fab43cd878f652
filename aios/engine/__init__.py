"""The daemon: one thread, one selector loop, timers; it wakes only on a timer, a child
exit (pidfd), a store change (inotify), a control request or a signal.

`core.Engine` is the one object, composed of parts that each own one concern (`runs`,
`planner`, `recorder`, `operations`); `daemon.Daemon` wires it to the world (lock,
configuration, store, clocks, processes, socket). The engine carries out the decisions of
`lifecycle` and `schedule`, spawns and stops processes only through its process layer,
and records every change through its recorder. Imports everything below it and the
server side of `control`.
"""
