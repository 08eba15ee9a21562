package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestOpenRefusesADirectoryInUse: a store open elsewhere is reported as
// held by someone else, not as damaged data to move aside.
func TestOpenRefusesADirectoryInUse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fs   vfs.FS
		dir  string
		want string
	}{
		// MemFS answers a second lock as another process's lock (EAGAIN).
		{"another process", vfs.NewMem(), "data", "in use by another process"},
		{"this process", vfs.Default, filepath.Join(t.TempDir(), "data"), "already open in this process"},
	} {
		s, err := Open(tc.fs, tc.dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Open(tc.fs, tc.dir, Options{})
		if err == nil {
			t.Fatalf("%s: a second Open of the same directory succeeded", tc.name)
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.want) || !strings.Contains(msg, tc.dir) || strings.Contains(msg, "move it aside") {
			t.Errorf("%s: error %q should name the directory, say %q and not advise moving it aside", tc.name, msg, tc.want)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		// Closed, the directory is free again.
		s, err = Open(tc.fs, tc.dir, Options{})
		if err != nil {
			t.Fatalf("%s: reopen after Close: %v", tc.name, err)
		}
		s.Close()
	}
}

// TestOpenRefusesAForeignDirectory: a non-empty directory that is not a
// Pebble store is left alone (docs/STORAGE.md), with a message that says so.
func TestOpenRefusesAForeignDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, name := range []string{"notes.txt", "photo.jpg"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("mine"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Open(vfs.Default, dir, Options{})
	if err == nil {
		t.Fatal("a directory of other files was opened as a store")
	}
	if !errors.Is(err, ErrNotAStore) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("error %q should be ErrNotAStore and name the directory and what it holds", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("Open wrote into the foreign directory: %v", names)
	}

	// An empty directory, and an ext4 mount point's lost+found, are fine.
	empty := t.TempDir()
	if err := os.Mkdir(filepath.Join(empty, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := Open(vfs.Default, empty, Options{})
	if err != nil {
		t.Fatalf("Open of an empty directory: %v", err)
	}
	s.Close()
	s, err = Open(vfs.Default, empty, Options{})
	if err != nil {
		t.Fatalf("reopen of a store: %v", err)
	}
	s.Close()
}
