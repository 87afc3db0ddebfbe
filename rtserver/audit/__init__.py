"""The audit log: one hash-chained JSON-lines record per turn and per security event, per node (``log``,
``chain``), texts kept under a policy (``redact``), read back by ``rtserver audit`` (``cli``)."""
