package packet

import (
	"encoding/hex"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// hx builds bytes from annotated fragments: hex pairs separated by spaces,
// and 'quoted ASCII'. It lets a test show a packet byte by byte.
func hx(parts ...string) []byte {
	var out []byte
	for _, p := range parts {
		for len(p) > 0 {
			p = strings.TrimLeft(p, " ")
			if p == "" {
				break
			}
			if p[0] == '\'' {
				end := strings.IndexByte(p[1:], '\'')
				if end < 0 {
					panic("hx: unterminated quote in " + p)
				}
				out = append(out, p[1:1+end]...)
				p = p[2+end:]
				continue
			}
			tok := p
			if i := strings.IndexByte(p, ' '); i >= 0 {
				tok, p = p[:i], p[i:]
			} else {
				p = ""
			}
			b, err := hex.DecodeString(tok)
			if err != nil {
				panic("hx: bad hex " + tok)
			}
			out = append(out, b...)
		}
	}
	return out
}

// cmpPackets compares decoded packets, treating nil and empty slices alike.
var cmpPackets = cmp.Options{cmpopts.EquateEmpty()}

func diff(want, got any) string { return cmp.Diff(want, got, cmpPackets) }

// decodeAll decodes one whole packet from b with a Decoder for version v.
func decodeAll(t testing.TB, b []byte, v Version) (Packet, error) {
	t.Helper()
	d := NewDecoder(strings.NewReader(string(b)), v)
	p, err := d.Next()
	if err == nil && d.Buffered() != 0 {
		t.Fatalf("%d bytes left after the packet", d.Buffered())
	}
	return p, err
}

// pk builds a packet from its first byte (hex) and its body fragments,
// computing the remaining length.
func pk(first string, body ...string) []byte {
	b := hx(body...)
	out := hx(first)
	out = appendVarint(out, uint32(len(b)))
	return append(out, b...)
}

func bs(s string) []byte { return []byte(s) }

// props builds a Properties value with the given single-valued properties
// marked present; set fields on the result before or after.
func present(p Properties, ids ...PropertyID) Properties {
	for _, id := range ids {
		p.Set(id)
	}
	return p
}

// pl returns its fragments preceded by their length as a variable byte
// integer: a property list with its property length.
func pl(parts ...string) string {
	n := len(hx(parts...))
	s := hex.EncodeToString(appendVarint(nil, uint32(n)))
	for _, p := range parts {
		s += " " + p
	}
	return s
}

// utf8Valid is an independent check: decode rune by rune and refuse errors
// and surrogates.
func utf8Valid(b []byte) bool {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		if r >= 0xD800 && r <= 0xDFFF {
			return false
		}
		b = b[n:]
	}
	return true
}
