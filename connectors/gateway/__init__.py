"""The HTTP gateway: REST and Server-Sent Events in front of the agents (docs/gateway.md)."""
