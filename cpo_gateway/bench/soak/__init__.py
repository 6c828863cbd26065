"""The reliability soaks: the crash scenario (`crash`) and the reconnect storm (`storm`), with
the daemon they run (`gateway`) and the storm's charger fleet (`fleet`)."""
