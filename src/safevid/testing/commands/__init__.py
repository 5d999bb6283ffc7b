"""The offline kit's ``safevid`` subcommands, registered through the ``safevid.commands`` entry points."""
