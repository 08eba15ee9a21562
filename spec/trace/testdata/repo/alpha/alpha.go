// Package alpha is a fixture; citations outside *_test.go files do not count:
// [v5 MQTT-3.12.4-1]
package alpha
