"""The `event-collector` command: one module per command group.

* :mod:`.serve`: the long-running processes (``serve``, ``worker``) and ``migrate``;
* :mod:`.maintenance`: operator tasks on stored data and keys;
* :mod:`.admin`: the ``tenant`` and ``client`` groups;
* :mod:`.jobs`: the ``scheduler`` process and the ``jobs`` group.

A new command goes into the module of its group (or a new module imported below) and
registers itself on :data:`app` with ``@app.command()``; helpers all commands share (settings,
running work on the database or a runtime, output) are in :mod:`.common`. Commands are listed in
``--help`` in the order their modules are imported here, then the groups.
"""

# The import order is the order of --help.
# isort: off
from event_collector.cli import serve, maintenance, admin, jobs

# isort: on
from event_collector.cli.common import app

__all__ = ["admin", "app", "jobs", "maintenance", "serve"]
