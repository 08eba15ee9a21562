package alpha

import "testing"

// TestConnectFirst checks [v5 MQTT-3.1.0-1] and [v3.1.1 MQTT-3.1.0-1].
func TestConnectFirst(t *testing.T) {
	t.Run("second CONNECT [v5 MQTT-3.1.0-2]", func(t *testing.T) {})
}

// Misprinted 3.1.1 IDs count under the corrected ID:
// [v3.1.1 MQTT-3.1.2.7] [v3.1.1 MQTT-3-8.3-4]
// and so does the corrected form: [v3.1.1 MQTT-3.8.3-4]
func TestRetainedSurvives(t *testing.T) {}

// Citing the same statement again adds a location: [v5 MQTT-3.1.0-1]
// A client-only statement may be cited, it is just not checkable: [v5 MQTT-4.6.0-2]
// Not a citation: MQTT-3.1.0-1 without brackets, or m["MQTT-3.1.0-1"].
func TestMore(t *testing.T) {}
