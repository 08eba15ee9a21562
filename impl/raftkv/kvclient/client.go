// Package kvclient is the Go client of a raftkv cluster: it talks to one
// node at a time (any node routes any request), pipelines requests on one
// connection, and moves to the next address when the connection fails. It
// is a runtime (TCP/TLS connections, a reader and a writer goroutine per
// connection, wall-clock deadlines), listed as one in impl/env's purity
// check; the simulator (sim/kvsim) has clients of its own that speak the
// same frames on its virtual network.
//
// Outcomes: a nil error is a success. A *raftkv.Error is the cluster's
// answer; the client already retried the retryable ones that prove the
// request did not happen (not leader, range moved, busy, unavailable,
// dropped) until the context's deadline. ErrUnknown means the connection
// ended or the cluster timed out after a write was sent: it may have been
// applied, or may still be.
package kvclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/skybridge-mq/skybridge/impl/raftkv"
)

// ErrUnknown is a write whose outcome is unknown.
var ErrUnknown = errors.New("kvclient: outcome unknown")

// Client is safe for concurrent use.
type Client struct {
	addrs []string
	tls   *tls.Config
	mu    sync.Mutex
	cur   *conn
	next  int
}

// New returns a client of the nodes at addrs (tlsCfg nil: plain TCP).
func New(addrs []string, tlsCfg *tls.Config) *Client {
	return &Client{addrs: addrs, tls: tlsCfg}
}

// Close closes the connection.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil {
		c.cur.fail(errors.New("kvclient: closed"))
		c.cur = nil
	}
}

type result struct {
	resp *raftkv.Response
	err  error
}

type conn struct {
	c       net.Conn
	out     chan []byte
	mu      sync.Mutex
	pending map[uint64]chan result
	watches map[uint64]chan raftkv.WatchEvent
	nextID  uint64
	err     error
	done    chan struct{}
}

// conn returns the current connection, dialling the next address if needed.
func (c *Client) conn(ctx context.Context) (*conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && c.cur.alive() {
		return c.cur, nil
	}
	var last error
	for range c.addrs {
		addr := c.addrs[c.next%len(c.addrs)]
		c.next++
		d := net.Dialer{Timeout: 2 * time.Second}
		var nc net.Conn
		var err error
		if c.tls != nil {
			td := tls.Dialer{NetDialer: &d, Config: c.tls}
			nc, err = td.DialContext(ctx, "tcp", addr)
		} else {
			nc, err = d.DialContext(ctx, "tcp", addr)
		}
		if err != nil {
			last = err
			continue
		}
		cn := &conn{c: nc, out: make(chan []byte, 4096), pending: map[uint64]chan result{},
			watches: map[uint64]chan raftkv.WatchEvent{}, done: make(chan struct{})}
		go cn.read()
		go cn.write()
		c.cur = cn
		return cn, nil
	}
	return nil, fmt.Errorf("kvclient: no node reachable: %w", last)
}

func (cn *conn) alive() bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.err == nil
}

func (cn *conn) fail(err error) {
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return
	}
	cn.err = err
	pend, watches := cn.pending, cn.watches
	cn.pending, cn.watches = nil, nil
	cn.mu.Unlock()
	close(cn.done)
	cn.c.Close()
	for _, ch := range pend {
		ch <- result{err: err}
	}
	for _, ch := range watches {
		close(ch)
	}
}

func (cn *conn) read() {
	r := bufio.NewReaderSize(cn.c, 64<<10)
	var buf []byte
	for {
		kind, body, b, err := raftkv.ReadFrame(r, buf)
		buf = b
		if err != nil {
			cn.fail(err)
			return
		}
		id, rest, ok := raftkv.SplitID(body)
		if kind == raftkv.FrameWatchEvt && ok {
			ev, err := raftkv.DecodeWatchEvent(id, rest)
			if err != nil {
				cn.fail(err)
				return
			}
			cn.watchEvent(ev)
			continue
		}
		if kind != raftkv.FrameResponse || !ok {
			cn.fail(errors.New("kvclient: unexpected frame"))
			return
		}
		resp, err := raftkv.DecodeResponse(rest)
		if err != nil {
			cn.fail(err)
			return
		}
		cn.mu.Lock()
		ch := cn.pending[id]
		delete(cn.pending, id)
		cn.mu.Unlock()
		if ch != nil {
			ch <- result{resp: resp}
		}
	}
}

func (cn *conn) write() {
	w := bufio.NewWriterSize(cn.c, 64<<10)
	for {
		select {
		case f := <-cn.out:
			if _, err := w.Write(f); err != nil {
				cn.fail(err)
				return
			}
			for more := true; more; {
				select {
				case f := <-cn.out:
					if _, err := w.Write(f); err != nil {
						cn.fail(err)
						return
					}
				default:
					more = false
				}
			}
			if err := w.Flush(); err != nil {
				cn.fail(err)
				return
			}
		case <-cn.done:
			return
		}
	}
}

// send numbers a frame, lets register record what waits for its id
// (under the lock, so that an answer cannot overtake it), and queues it.
func (cn *conn) send(ctx context.Context, kind byte, body []byte, register func(id uint64)) (uint64, error) {
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return 0, cn.err
	}
	cn.nextID++
	id := cn.nextID
	register(id)
	cn.mu.Unlock()
	select {
	case cn.out <- raftkv.AppendIDFrame(nil, kind, id, body):
		return id, nil
	case <-cn.done:
		return id, cn.err
	case <-ctx.Done():
		return id, ctx.Err()
	}
}

// roundTrip sends one frame and waits for its answer.
func (cn *conn) roundTrip(ctx context.Context, kind byte, body []byte) (*raftkv.Response, error) {
	ch := make(chan result, 1)
	id, err := cn.send(ctx, kind, body, func(id uint64) { cn.pending[id] = ch })
	if err != nil {
		cn.mu.Lock()
		delete(cn.pending, id)
		cn.mu.Unlock()
		return nil, err
	}
	select {
	case r := <-ch:
		return r.resp, r.err
	case <-ctx.Done():
		cn.mu.Lock()
		delete(cn.pending, id)
		cn.mu.Unlock()
		return nil, ctx.Err()
	}
}

// Do sends a request and retries what may be retried.
func (c *Client) Do(ctx context.Context, req *raftkv.Request) (*raftkv.Response, error) {
	return c.do(ctx, req, raftkv.FrameRequest, raftkv.EncodeRequest(req), req.Kind == raftkv.ReqWrite)
}

func (c *Client) do(ctx context.Context, req *raftkv.Request, kind byte, body []byte, write bool) (*raftkv.Response, error) {
	backoff := 10 * time.Millisecond
	for {
		cn, err := c.conn(ctx)
		if err == nil {
			var resp *raftkv.Response
			resp, err = cn.roundTrip(ctx, kind, body)
			switch {
			case err == nil && resp.Err == nil:
				return resp, nil
			case err == nil && (resp.Err.Ambiguous || !resp.Err.Retryable()):
				if resp.Err.Ambiguous {
					return resp, fmt.Errorf("%w: %v", ErrUnknown, resp.Err)
				}
				return resp, resp.Err
			case err == nil:
				err = resp.Err // retryable: the request did not happen
			case write && ctx.Err() == nil:
				return nil, fmt.Errorf("%w: %v", ErrUnknown, err) // sent, then the connection ended
			}
		}
		if ctx.Err() != nil {
			if write {
				return nil, fmt.Errorf("%w: %v", ErrUnknown, ctx.Err())
			}
			return nil, ctx.Err()
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// Put sets key to value.
func (c *Client) Put(ctx context.Context, key, value []byte) error {
	_, err := c.Do(ctx, &raftkv.Request{Kind: raftkv.ReqWrite, Ops: []raftkv.Op{{Kind: raftkv.OpPut, Key: key, Value: value}}})
	return err
}

// Delete removes key.
func (c *Client) Delete(ctx context.Context, key []byte) error {
	_, err := c.Do(ctx, &raftkv.Request{Kind: raftkv.ReqWrite, Ops: []raftkv.Op{{Kind: raftkv.OpDelete, Key: key}}})
	return err
}

// Get reads key linearizably.
func (c *Client) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	resp, err := c.Do(ctx, &raftkv.Request{Kind: raftkv.ReqGet, Key: key})
	if err != nil {
		return nil, false, err
	}
	return resp.Value, resp.Found, nil
}

// CompareAndSet sets key to value if it holds expect (absent when expect
// is nil); it reports whether it did and what the key held.
func (c *Client) CompareAndSet(ctx context.Context, key, expect, value []byte) (bool, []byte, error) {
	op := raftkv.Op{Kind: raftkv.OpCAS, Key: key, Expect: expect, ExpectAbsent: expect == nil, Value: value}
	resp, err := c.Do(ctx, &raftkv.Request{Kind: raftkv.ReqWrite, Ops: []raftkv.Op{op}})
	if err != nil {
		return false, nil, err
	}
	return resp.Succeeded, resp.Current, nil
}

// Scan returns the pairs in [start, end) of one range, up to limit (0: no
// limit), and the key to continue from (nil when done).
func (c *Client) Scan(ctx context.Context, start, end []byte, limit int) ([]raftkv.KV, []byte, error) {
	resp, err := c.Do(ctx, &raftkv.Request{Kind: raftkv.ReqScan, Key: start, End: end, Limit: limit})
	if err != nil {
		return nil, nil, err
	}
	return resp.KVs, resp.Resume, nil
}

// DeclareDead tells the cluster that a node is gone for good: its replicas
// are replaced on the other nodes.
func (c *Client) DeclareDead(ctx context.Context, node raftkv.NodeID) error {
	var b [8]byte
	for i := range 8 {
		b[i] = byte(uint64(node) >> (56 - 8*i))
	}
	_, err := c.do(ctx, nil, raftkv.FrameAdmin, b[:], true)
	return err
}

// watchEvent hands an event to its watch; a watcher that does not keep up
// loses its watch (the channel closes: watch again, as after a Reset).
func (cn *conn) watchEvent(ev raftkv.WatchEvent) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	ch := cn.watches[ev.ID]
	if ch == nil {
		return
	}
	select {
	case ch <- ev:
	default:
		delete(cn.watches, ev.ID)
		close(ch)
		select {
		case cn.out <- raftkv.AppendIDFrame(nil, raftkv.FrameUnwatch, ev.ID, nil):
		default: // the node's watch then ends with the connection
		}
	}
}

// Watch watches the keys with a prefix. The first event is a Reset, and so
// is any later one after which events may have been missed: read the
// prefix again then (buffering the events that arrive meanwhile, applied
// after the read). The channel closes when the connection ends, the
// consumer falls more than buffer events behind, or ctx ends: watch again.
func (c *Client) Watch(ctx context.Context, prefix []byte, buffer int) (<-chan raftkv.WatchEvent, error) {
	cn, err := c.conn(ctx)
	if err != nil {
		return nil, err
	}
	ch := make(chan raftkv.WatchEvent, max(buffer, 1))
	id, err := cn.send(ctx, raftkv.FrameWatch, prefix, func(id uint64) { cn.watches[id] = ch })
	if err != nil {
		cn.mu.Lock()
		delete(cn.watches, id)
		cn.mu.Unlock()
		return nil, err
	}
	go func() {
		select {
		case <-ctx.Done():
			cn.mu.Lock()
			if cn.watches[id] == ch {
				delete(cn.watches, id)
				close(ch)
			}
			cn.mu.Unlock()
			select {
			case cn.out <- raftkv.AppendIDFrame(nil, raftkv.FrameUnwatch, id, nil):
			case <-cn.done:
			}
		case <-cn.done:
		}
	}()
	return ch, nil
}
