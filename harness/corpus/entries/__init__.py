"""One module per corpus entry; each defines ``ENTRIES`` (see :mod:`harness.corpus`).

Apps are built on first access of ``buggy`` / ``fixed`` (a module ``__getattr__``), in the
server process; importing a module here builds nothing.
"""
