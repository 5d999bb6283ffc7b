"""Subcommands of the ``safevid`` CLI (see ``safevid.cli``)."""
