package spec

// Skipped: the top-level spec directory (the catalogue package). [v5 MQTT-3.12.4-1] [MQTT-1.1.1-1]
