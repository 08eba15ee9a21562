package kvserver

import (
	"bufio"
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/skybridge-mq/skybridge/impl/raftkv"
)

// clientConn is one client's connection: a reader goroutine hands its
// requests to the loop (waiting while the loop's queue is full), a writer
// goroutine writes the replies queued for it in batches.
type clientConn struct {
	s       *Server
	c       net.Conn
	out     chan []byte
	once    sync.Once
	gone    chan struct{}
	watches map[uint64]uint64 // the client's watch id → the node's; owned by the loop
}

func (s *Server) acceptClients() {
	defer s.wg.Done()
	for {
		c, err := s.cln.Accept()
		if err != nil {
			return
		}
		cc := &clientConn{s: s, c: c, out: make(chan []byte, s.cfg.ClientQueue), gone: make(chan struct{}), watches: map[uint64]uint64{}}
		s.conns.Store(cc, true)
		s.wg.Add(2)
		go cc.read()
		go cc.write()
	}
}

func (cc *clientConn) close() {
	cc.once.Do(func() {
		close(cc.gone)
		cc.c.Close()
		cc.s.conns.Delete(cc)
	})
}

// reply queues an answer.
func (cc *clientConn) reply(id uint64, resp *raftkv.Response) {
	cc.send(raftkv.AppendIDFrame(nil, raftkv.FrameResponse, id, raftkv.EncodeResponse(resp)))
}

// send queues a frame; a client that does not read what it is sent is
// disconnected rather than allowed to hold the loop.
func (cc *clientConn) send(f []byte) {
	select {
	case cc.out <- f:
	case <-cc.gone:
	default:
		cc.s.clientsDropped.Add(1)
		cc.close()
	}
}

func (cc *clientConn) read() {
	defer cc.s.wg.Done()
	defer cc.close()
	defer cc.s.post(event{c: cc, gone: true})
	r := bufio.NewReaderSize(cc.c, 64<<10)
	var buf []byte
	for {
		kind, body, b, err := raftkv.ReadFrame(r, buf)
		buf = b
		if err != nil {
			return
		}
		id, rest, ok := raftkv.SplitID(body)
		if !ok {
			return
		}
		ev := event{c: cc, id: id}
		switch kind {
		case raftkv.FrameRequest:
			req, err := raftkv.DecodeRequest(rest)
			if err != nil {
				cc.reply(id, &raftkv.Response{Err: &raftkv.Error{Code: raftkv.ErrBadRequest, Msg: err.Error()}})
				continue
			}
			ev.req = req
		case raftkv.FrameAdmin:
			if len(rest) != 8 {
				return
			}
			ev.dead = raftkv.NodeID(binary.BigEndian.Uint64(rest))
		case raftkv.FrameWatch:
			ev.watch = append([]byte{}, rest...)
		case raftkv.FrameUnwatch:
			ev.unwatch = true
		default:
			return
		}
		if !cc.s.post(ev) {
			return
		}
	}
}

func (cc *clientConn) write() {
	defer cc.s.wg.Done()
	defer cc.close()
	w := bufio.NewWriterSize(cc.c, 64<<10)
	for {
		var f []byte
		select {
		case f = <-cc.out:
		case <-cc.gone:
			return
		}
		cc.c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(f); err != nil {
			return
		}
		for more := true; more; {
			select {
			case f = <-cc.out:
				if _, err := w.Write(f); err != nil {
					return
				}
			default:
				more = false
			}
		}
		if err := w.Flush(); err != nil {
			return
		}
	}
}
