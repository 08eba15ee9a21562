package server

import "time"

// A CONNECT refused because its source is throttled or banned (auth.Guard)
// gets its refusal after the guard's RefusalDelay, on the connection's own
// reader goroutine, instead of at once: a storm's clients, which come back
// as soon as they are answered, then wait too, which costs the broker a
// parked goroutine per held connection instead of a CONNECT to parse and
// refuse every few microseconds. At most maxHeld refusals are held at
// once; beyond, they are answered at once and counted.

// maxHeld bounds the refusals held at once.
const maxHeld = 1024

// holdRefusal waits before a refused CONNECT's answer when the guard asks
// for it (the CONNACK stays in the output until finish writes it).
func (s *Server) holdRefusal(cn *connection) {
	g := s.cfg.AuthGuard
	if g == nil {
		return
	}
	d := g.RefusalDelay(cn.c.Remote()) // as the guard saw it (AuthRequest.Remote)
	if d <= 0 {
		return
	}
	if s.holding.Add(1) > maxHeld {
		s.holding.Add(-1)
		s.notHeld.Add(1)
		return
	}
	defer s.holding.Add(-1)
	s.held.Add(1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.quit:
	}
}
