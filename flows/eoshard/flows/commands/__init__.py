"""One module per ``eoshard`` command; each registers itself on ``eoshard.flows.app.app``."""
