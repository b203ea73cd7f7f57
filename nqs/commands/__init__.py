"""One module per ``nqs`` subcommand: ``register(subparsers)`` adds it, ``run(args)`` runs it."""
