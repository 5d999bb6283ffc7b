"""Offline test kit: tiny random-weight checkpoints, synthetic videos, a loopback Hub, a fault-injecting
OpenAI-compatible server and a demo preference set.

Everything here is built locally and deterministically, so the test suite runs the same code
paths as a 7B model would, without a network. Production code never imports this package: the kit
plugs in through the entry points declared in safevid's ``pyproject.toml`` (`safevid.plugins`):
``tiny:<family>`` models and ``test_videos: N`` build inputs. Its commands (``tiny-models``, ``make-videos``,
``loopback-hub``, ``fault-serve``) run as ``python -m safevid.testing COMMAND``.
"""
