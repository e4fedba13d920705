"""Development and test helpers that do not ship in the Function App (see ``.funcignore``)."""
