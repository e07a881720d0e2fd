//! gram-host: the `gram` CLI, file I/O, CPU backend and metrics (see issue 3).
