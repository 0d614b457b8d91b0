"""One module per scenario of ``./scripts/bench``; ``bench/run.py`` runs them in order.

* ``baseline``: the bare Starlette route every figure is compared with;
* ``ingest`` (single events; it starts the service that ``memory`` and ``batch`` measure too);
* ``fanout`` and ``scaleout`` (deliveries to webhooks; ``load`` holds their load generators
  and the sink).
"""
