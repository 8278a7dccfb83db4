"""Worker agents: connect to a controller, evaluate, stream partials, reconnect."""
