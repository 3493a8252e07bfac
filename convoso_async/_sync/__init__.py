"""The synchronous client: `Convoso` runs one `AsyncConvoso` on an event loop of its own thread."""
