"""One module per corpus entry; each defines ``ENTRY`` (``ENTRIES`` when it holds several; see
:mod:`harness.corpus`), the scaffolding it shares is in :mod:`._common`.

Apps are built on first access of ``buggy`` / ``fixed`` (a module ``__getattr__``), in the
server process; importing a module here builds nothing.
"""
