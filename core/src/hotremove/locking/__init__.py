"""locking/: lockdep for the simulated kernel (the kernel's kernel/locking/) — lock classes,
the order graph, sleeping-in-atomic reports. The lock primitives themselves are
:mod:`hotremove.model.locks`."""
