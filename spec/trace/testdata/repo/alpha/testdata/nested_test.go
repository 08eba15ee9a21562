package testdata

// Skipped: inside testdata. [v5 MQTT-3.12.4-1]
