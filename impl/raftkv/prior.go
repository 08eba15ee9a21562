package raftkv

import (
	"bytes"
	"errors"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// prior reads the size of the value a put or delete replaces, which the
// range's exact stats (LiveBytes, LiveKeys) need. A Get builds an iterator
// over the batch, the memtables and the tables for each key: for a batched
// write that was most of the apply's cost. So a write of several puts and
// deletes of distinct keys (the batched case) reads them all through one
// iterator, made when the write's apply begins. The iterator sees the
// batch as it was then, which is exactly the state before each of those
// keys is written, because no key comes twice. Anything else (one op, a
// key twice, a CAS, an increment, a range delete) reads key by key.
type prior struct {
	b  *pebble.Batch
	it *pebble.Iterator
}

// priorIterOps is the smallest write that gets an iterator of its own.
const priorIterOps = 4

func newPrior(b *pebble.Batch, ops []Op) (prior, error) {
	p := prior{b: b}
	if len(ops) < priorIterOps {
		return p, nil
	}
	keys := make([][]byte, 0, len(ops))
	for _, op := range ops {
		if op.Kind != OpPut && op.Kind != OpDelete {
			return p, nil
		}
		keys = append(keys, op.Key)
	}
	slices.SortFunc(keys, bytes.Compare)
	for i := 1; i < len(keys); i++ {
		if bytes.Equal(keys[i-1], keys[i]) {
			return p, nil
		}
	}
	it, err := b.NewIter(&pebble.IterOptions{LowerBound: dataKey(keys[0]), UpperBound: dataKey(append(slices.Clip(keys[len(keys)-1]), 0))})
	if err != nil {
		return p, err
	}
	p.it = it
	return p, nil
}

func (p prior) size(k []byte) (n int, found bool, err error) {
	dk := dataKey(k)
	if p.it == nil {
		v, closer, err := p.b.Get(dk)
		if errors.Is(err, pebble.ErrNotFound) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		n = len(v)
		return n, true, closer.Close()
	}
	if !p.it.SeekPrefixGE(dk) || !bytes.Equal(p.it.Key(), dk) {
		return 0, false, p.it.Error()
	}
	v, err := p.it.ValueAndErr()
	return len(v), err == nil, err
}

func (p prior) close() {
	if p.it != nil {
		p.it.Close()
	}
}
