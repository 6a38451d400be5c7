"""A shop's feeds: how landed files read, the catalog built from them, pseudonymized ids."""
