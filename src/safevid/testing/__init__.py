"""Offline test kit: tiny random-weight checkpoints, synthetic videos and a loopback Hub.

Everything here is built locally and deterministically, so the test suite runs the same code
paths as a 7B model would, without a network.
"""
