"""safevid: video safety preference data, video DPO on TRL, and the SafeVidBench metric."""

__version__ = "0.1.0.dev0"
