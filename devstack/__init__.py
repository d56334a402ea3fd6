"""The development stack: a private redis-server and the platform's processes on loopback (`make run`)."""
