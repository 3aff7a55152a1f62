"""sdpod: rootless containers supervised by systemd."""
