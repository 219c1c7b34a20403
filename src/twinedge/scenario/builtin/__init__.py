"""Built-in scenarios shipped with twinedge."""
