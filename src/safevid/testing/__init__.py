"""Offline test kit: tiny random-weight checkpoints, synthetic videos, a loopback Hub, a fault-injecting
OpenAI-compatible server, a demo preference set, and the published shapes of the 7B checkpoints
(`model_shapes`: random-weight models of the real size, for GPU benchmarks and memory arithmetic).

Everything here is built locally and deterministically, so the test suite runs the same code
paths as a 7B model would, without a network. Production code never imports this package: the kit
plugs in through the entry points declared in safevid's ``pyproject.toml`` (`safevid.plugins`):
``tiny:<family>`` models, ``test_videos: N`` build inputs and the ``tiny-models``, ``make-videos``,
``loopback-hub`` and ``fault-serve`` commands.
"""
