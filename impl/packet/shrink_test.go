package packet

import (
	"bytes"
	"testing"
)

// A decoder kept for reuse lets go of what an unusual packet grew: a PUBLISH
// with thousands of user properties does not leave every pooled decoder
// holding their slice headers.
func TestDecoderShrink(t *testing.T) {
	t.Parallel()
	big := &Publish{Topic: []byte("t"), Payload: []byte("x")}
	for range 5000 {
		big.Properties.User = append(big.Properties.User, UserProperty{Key: []byte("k"), Value: []byte("v")})
	}
	small := &Publish{Topic: []byte("t"), Payload: []byte("y")}
	small.Properties.User = []UserProperty{{Key: []byte("a"), Value: []byte("b")}}
	var stream bytes.Buffer
	for _, p := range []*Publish{big, small} {
		b, err := Encode(p, V5)
		if err != nil {
			t.Fatal(err)
		}
		stream.Write(b)
	}
	d := NewDecoder(&stream, V5)
	p, err := d.Next()
	if err != nil || len(p.(*Publish).Properties.User) != 5000 {
		t.Fatalf("decoding the big PUBLISH: %v", err)
	}
	d.Shrink(64)
	if c := cap(d.publish.Properties.User); c > 64 {
		t.Fatalf("after Shrink the decoder keeps room for %d user properties", c)
	}
	p, err = d.Next()
	if err != nil {
		t.Fatal(err)
	}
	if got := p.(*Publish); len(got.Properties.User) != 1 || string(got.Payload) != "y" {
		t.Fatalf("after Shrink: %s", Format(got))
	}
	d.Shrink(64) // small slices stay
	if cap(d.publish.Properties.User) == 0 {
		t.Fatal("Shrink dropped a small slice")
	}
}
