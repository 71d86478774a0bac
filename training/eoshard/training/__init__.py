"""Read eoshard shards with torch, train, evaluate, package and apply models."""
