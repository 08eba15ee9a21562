package fleet

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"io"
)

// sealer encrypts what the cloud keeps at rest (secrets, the CA key)
// with AES-256-GCM. Each value gets a fresh nonce from the fleet's
// randomness; the record's key is the additional data, so a sealed value
// moved to another record does not open.
type sealer struct {
	aead cipher.AEAD
	rnd  io.Reader
}

func newSealer(key []byte, rnd io.Reader) (*sealer, error) {
	if len(key) != 32 {
		return nil, errors.New("fleet: the secret key is 32 bytes (AES-256)")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead, rnd: rnd}, nil
}

// seal returns nonce || ciphertext.
func (s *sealer) seal(plain []byte, ad string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := io.ReadFull(s.rnd, nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plain, []byte(ad)), nil
}

func (s *sealer) open(sealed []byte, ad string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("fleet: sealed value too short")
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], []byte(ad))
}
