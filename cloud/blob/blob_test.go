package blob

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func digest(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestPutOpenVerify(t *testing.T) {
	t.Parallel()
	s, err := Open(vfs.NewMem(), "blobs")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("#!/bin/sh\necho hi\n")
	sha, n, err := s.Put(bytes.NewReader(data), digest(data))
	if err != nil || sha != digest(data) || n != int64(len(data)) {
		t.Fatalf("Put = %s %d %v", sha, n, err)
	}
	if !s.Has(sha, n) || s.Has(sha, n+1) || s.Has("nothex", -1) {
		t.Error("Has")
	}
	f, _ := s.Open(sha)
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, data) {
		t.Error("content differs")
	}
	if err := s.Verify(sha); err != nil {
		t.Error(err)
	}
	if _, _, err := s.Put(strings.NewReader("other"), sha); !errors.Is(err, ErrMismatch) {
		t.Errorf("mismatch: %v", err)
	}
	list, _ := s.List()
	if len(list) != 1 || list[0] != sha {
		t.Errorf("List = %v (temporary files must not stay)", list)
	}
	s.MaxSize = 4
	if _, _, err := s.Put(strings.NewReader("too long"), ""); err == nil {
		t.Error("oversize blob stored")
	}
}

// A blob that Put returned survives a power loss, complete.
func TestPutSurvivesPowerLoss(t *testing.T) {
	t.Parallel()
	fs := vfs.NewCrashableMem()
	s, _ := Open(fs, "b")
	data := bytes.Repeat([]byte("x"), 10000)
	sha, _, err := s.Put(bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0, RNG: rand.New(rand.NewPCG(1, 2))})
	s2, _ := Open(clone, "b")
	if err := s2.Verify(sha); err != nil {
		t.Fatalf("after power loss: %v", err)
	}
}

// The caller's bytes are not the file's to change (Pebble's MemFS
// scribbles on written buffers in race builds): the same slice stores
// twice.
func TestPutLeavesTheCallersBytes(t *testing.T) {
	t.Parallel()
	data := []byte("#!/bin/sh\nexit 0\n")
	want := digest(data)
	for i := 0; i < 2; i++ {
		s, _ := Open(vfs.NewMem(), "b")
		if _, _, err := s.Put(bytes.NewReader(data), want); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
}
