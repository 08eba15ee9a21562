package spec

// Counted: only the top-level spec directory is skipped. [v3.1.1 MQTT-3.12.4-1]
