//go:build race

package message

// poison overwrites a released message's bytes in the race-detector builds
// the tests run, so that a holder reading a message after its last Release
// sees garbage, which the tests notice, instead of the old content.
func poison(b []byte) {
	for i := range b {
		b[i] = 0xEE
	}
}

const raceEnabled = true
