"""The operators' console: an admin listener with server-rendered pages, live updates over
Server-Sent Events, /metrics and /healthz. Reads and acts through console.port.ConsoleOps."""
