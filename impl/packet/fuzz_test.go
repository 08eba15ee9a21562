package packet

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode checks that no input makes the decoder panic, and that
// whatever decodes re-encodes to bytes that decode to the same packet.
func FuzzDecode(f *testing.F) {
	for _, cases := range allCases() {
		for _, tc := range cases {
			f.Add(tc.in, byte(tc.v))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, level byte) {
		v := []Version{V31, V311, V5}[int(level)%3]
		d := NewDecoder(bytes.NewReader(data), v)
		d.MaxPacketSize = 1 << 16
		for {
			p, err := d.Next()
			if err != nil {
				var e *Error
				if errors.As(err, &e) && e.Code < 0x80 {
					t.Fatalf("error with a success code: %v", err)
				}
				return
			}
			ev := d.Version
			if c, ok := p.(*Connect); ok {
				ev = c.Version
			}
			enc, err := p.Append(nil, ev)
			if err != nil {
				t.Fatalf("decoded %s does not encode: %v", p.Type(), err)
			}
			if len(enc) != p.Size(ev) {
				t.Fatalf("%s: encoded %d bytes, Size %d", p.Type(), len(enc), p.Size(ev))
			}
			d2 := NewDecoder(bytes.NewReader(enc), ev)
			p2, err := d2.Next()
			if err != nil {
				t.Fatalf("re-encoded %s does not decode: %v\n% x", p.Type(), err, enc)
			}
			if df := diff(p, p2); df != "" {
				t.Fatalf("%s changed in a round trip (-first +second):\n%s", p.Type(), df)
			}
		}
	})
}

// FuzzUTF8 checks the string rules against the standard library's view.
func FuzzUTF8(f *testing.F) {
	f.Add([]byte("a/b"))
	f.Add([]byte{0xed, 0xa0, 0x80})
	f.Add([]byte{0xef, 0xbb, 0xbf})
	f.Add([]byte{'a', 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		got := ValidUTF8(b)
		want := !bytes.ContainsRune(b, 0) && utf8Valid(b)
		if got != want {
			t.Fatalf("ValidUTF8(% x) = %v, want %v", b, got, want)
		}
	})
}
