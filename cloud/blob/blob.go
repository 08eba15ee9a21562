// Package blob keeps application artifacts by content: a file per SHA-256
// digest in one directory, written atomically (temporary file, sync,
// rename, directory sync) and verified when it is written. The cloud keeps
// what operators upload in one; each node keeps what it downloaded in
// another, so that it can start its apps again with no cloud at all.
//
// # Contract
//
// Core code: the files are reached through the vfs.FS given to Open (the
// disk, or a crashable in-memory FS in the simulator). A Store is safe for
// concurrent use as far as its file system is: writers use distinct
// temporary names, and a digest's file appears complete or not at all.
package blob

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/skybridge-mq/skybridge/impl/env"
)

// ErrMismatch: the content does not have the digest it was announced with.
var ErrMismatch = errors.New("blob: content does not match its sha256")

// Store is a directory of blobs named by their SHA-256.
type Store struct {
	fs  vfs.FS
	dir string
	tmp atomic.Uint64
	// MaxSize bounds one blob (0: no bound).
	MaxSize int64
}

// Open opens (creating) the store in dir, and removes temporary files a
// crash left behind.
func Open(fs vfs.FS, dir string) (*Store, error) {
	// The entries leading to the directory must survive a power loss too.
	if err := env.MkdirAllDurable(fs, dir); err != nil {
		return nil, err
	}
	s := &Store{fs: fs, dir: dir}
	names, err := fs.List(dir)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if strings.HasPrefix(n, "tmp-") {
			_ = fs.Remove(fs.PathJoin(dir, n))
		}
	}
	return s, nil
}

// Path returns the file of a digest (which may not exist).
func (s *Store) Path(sha string) string { return s.fs.PathJoin(s.dir, sha) }

// Has reports whether the blob is stored with the given size (a size < 0
// is not checked).
func (s *Store) Has(sha string, size int64) bool {
	if !validDigest(sha) {
		return false
	}
	fi, err := s.fs.Stat(s.Path(sha))
	return err == nil && (size < 0 || fi.Size() == size)
}

func validDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// Put stores what r yields. want, when not empty, is the expected digest:
// other content is refused with ErrMismatch and not kept.
func (s *Store) Put(r io.Reader, want string) (sha string, size int64, err error) {
	tmp := s.fs.PathJoin(s.dir, "tmp-"+strconv.FormatUint(s.tmp.Add(1), 10))
	f, err := s.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return "", 0, err
	}
	defer func() {
		if err != nil {
			_ = s.fs.Remove(tmp)
		}
	}()
	h := sha256.New()
	src := r
	if s.MaxSize > 0 {
		src = io.LimitReader(r, s.MaxSize+1)
	}
	// Through a buffer of our own, hashed before it is written: a file
	// may scribble on what it was given (Pebble's in-memory FS does, in
	// race builds), and the caller's bytes must stay theirs.
	size, err = io.CopyBuffer(io.MultiWriter(h, f), struct{ io.Reader }{src}, make([]byte, 32<<10))
	if err == nil && s.MaxSize > 0 && size > s.MaxSize {
		err = fmt.Errorf("blob: larger than %d bytes", s.MaxSize)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, err
	}
	sha = hex.EncodeToString(h.Sum(nil))
	if want != "" && sha != want {
		return "", 0, ErrMismatch
	}
	if err = s.fs.Rename(tmp, s.Path(sha)); err != nil {
		return "", 0, err
	}
	return sha, size, env.SyncDir(s.fs, s.dir)
}

// Open opens a blob for reading.
func (s *Store) Open(sha string) (vfs.File, error) {
	if !validDigest(sha) {
		return nil, fmt.Errorf("blob: bad digest %q", sha)
	}
	return s.fs.Open(s.Path(sha))
}

// Verify reads a blob and checks its digest.
func (s *Store) Verify(sha string) error {
	f, err := s.Open(sha)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != sha {
		return ErrMismatch
	}
	return nil
}

// Remove deletes a blob.
func (s *Store) Remove(sha string) error {
	if !validDigest(sha) {
		return fmt.Errorf("blob: bad digest %q", sha)
	}
	return s.fs.Remove(s.Path(sha))
}

// List returns the stored digests, sorted.
func (s *Store) List() ([]string, error) {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if validDigest(n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}
