"""Offline test kit: tiny random-weight checkpoints, synthetic videos, a loopback Hub, a fault-injecting
OpenAI-compatible server, a demo preference set, and the published shapes of the 7B checkpoints
(`model_shapes`: random-weight models of the real size, for GPU benchmarks and memory arithmetic).

Everything here is built locally and deterministically, so the test suite runs the same code
paths as a 7B model would, without a network. Production code never imports this package: the kit
plugs in through the entry points declared in safevid's ``pyproject.toml`` (`safevid.plugins`):
``tiny:<family>`` models and ``test_videos: N`` build inputs. Its commands (``tiny-models``, ``make-videos``,
``loopback-hub``, ``fault-serve``) run as ``python -m safevid.testing COMMAND``.
"""
