package vnet

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// peer is the far end of a port: what a QEMU network card would be.
type peer struct {
	t    *testing.T
	conn net.Conn
	mac  mac
}

func join(t *testing.T, s *Switch, name string, last byte) *peer {
	t.Helper()
	a, b := net.Pipe()
	if err := s.Attach(name, a); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &peer{t: t, conn: b, mac: mac{0x52, 0x54, 0, 0, 0, last}}
}

var broadcast = mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func (p *peer) send(dst mac, payload string) {
	p.t.Helper()
	frame := append(append(append([]byte{}, dst[:]...), p.mac[:]...), 0x08, 0x00)
	frame = append(frame, payload...)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(frame)))
	p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.conn.Write(append(hdr[:], frame...)); err != nil {
		p.t.Fatalf("send %q: %v", payload, err)
	}
}

// recv returns the payload of the next frame the peer gets.
func (p *peer) recv() (src mac, payload string) {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(p.conn, hdr[:]); err != nil {
		p.t.Fatalf("receive: %v", err)
	}
	frame := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(p.conn, frame); err != nil {
		p.t.Fatalf("receive: %v", err)
	}
	copy(src[:], frame[6:12])
	return src, string(frame[14:])
}

func (p *peer) want(from *peer, payload string) {
	p.t.Helper()
	src, got := p.recv()
	if src != from.mac || got != payload {
		p.t.Fatalf("got %q from %x, want %q from %x", got, src, payload, from.mac)
	}
}

func TestLearning(t *testing.T) {
	s := New(nil)
	defer s.Close()
	a, b, c := join(t, s, "a", 1), join(t, s, "b", 2), join(t, s, "c", 3)

	// Unknown and broadcast destinations go to every other port.
	go a.send(broadcast, "hello all")
	b.want(a, "hello all")
	c.want(a, "hello all")
	go a.send(b.mac, "b is not known yet")
	b.want(a, "b is not known yet")
	c.want(a, "b is not known yet")

	// a is learned: b's answer goes to a alone. c's next frame is a later
	// broadcast, so c never got the answer.
	go b.send(a.mac, "to a only")
	a.want(b, "to a only")
	go b.send(broadcast, "barrier")
	c.want(b, "barrier")
	a.want(b, "barrier")

	// A frame is never sent back to the port it came from: a gets b's
	// next broadcast, not its own frame to itself.
	a.send(a.mac, "to myself")
	go b.send(broadcast, "second barrier")
	a.want(b, "second barrier")
}

func TestPeerLeaves(t *testing.T) {
	s := New(nil)
	defer s.Close()
	a, b, c := join(t, s, "a", 1), join(t, s, "b", 2), join(t, s, "c", 3)
	go a.send(broadcast, "I am a")
	b.want(a, "I am a")
	c.want(a, "I am a")

	a.conn.Close()
	waitPorts(t, s, 2)
	// a's address is forgotten: a frame to it floods to the others.
	go b.send(a.mac, "is a there?")
	c.want(b, "is a there?")

	select {
	case <-s.Empty():
		t.Fatal("empty with two ports")
	default:
	}
	b.conn.Close()
	c.conn.Close()
	select {
	case <-s.Empty():
	case <-time.After(5 * time.Second):
		t.Fatal("not empty after every port left")
	}
}

func waitPorts(t *testing.T, s *Switch, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Ports() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d ports, want %d", s.Ports(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// deafPeer joins a port that never reads, after it sent one frame (which
// a and b receive) so that the switch knows its address.
func deafPeer(t *testing.T, s *Switch, a, b *peer) *peer {
	t.Helper()
	deaf := join(t, s, "deaf", 3)
	go deaf.send(broadcast, "I never read")
	a.want(deaf, "I never read")
	b.want(deaf, "I never read")
	return deaf
}

// TestFlood: a port that never reads holds at most QueueLen frames (and
// what its writer's buffer holds); the rest are dropped.
func TestFlood(t *testing.T) {
	s := New(nil)
	defer s.Close()
	a, b := join(t, s, "a", 1), join(t, s, "b", 2)
	deaf := deafPeer(t, s, a, b)
	const n, size = 3000, 1500
	payload := string(bytes.Repeat([]byte("x"), size))
	for i := 0; i < n; i++ {
		a.send(deaf.mac, payload)
	}
	// At most QueueLen queued, a 64 KiB buffer's worth in the writer and
	// one it is stuck on.
	held := int64(QueueLen + (64<<10)/(size+18) + 1)
	deadline := time.Now().Add(5 * time.Second)
	for s.Dropped() < n-held && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if d := s.Dropped(); d < n-held {
		t.Fatalf("dropped %d frames, want at least %d", d, n-held)
	}
}

// TestFloodServesOthers: while a deaf port drops, a frame between two
// others still arrives, and the first frame b gets after the flood is it.
func TestFloodServesOthers(t *testing.T) {
	s := New(nil)
	defer s.Close()
	a, b := join(t, s, "a", 1), join(t, s, "b", 2)
	deaf := deafPeer(t, s, a, b)
	go func() {
		for i := 0; i < 4*QueueLen; i++ {
			a.send(deaf.mac, "flood")
		}
		a.send(b.mac, "done")
	}()
	b.want(a, "done")
}

func TestTooLong(t *testing.T) {
	s := New(nil)
	defer s.Close()
	a := join(t, s, "a", 1)
	join(t, s, "b", 2)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], MaxFrame+1)
	a.conn.Write(hdr[:])
	waitPorts(t, s, 1)
}

// TestClosed: Close ends every port; Attach after it refuses.
func TestClosed(t *testing.T) {
	s := New(nil)
	a := join(t, s, "a", 1)
	s.Close()
	a.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the port is open after Close")
	}
	x, _ := net.Pipe()
	if err := s.Attach("late", x); err != ErrClosed {
		t.Fatalf("Attach after Close: %v, want ErrClosed", err)
	}
}

// FuzzPort feeds what a guest could send; the switch must neither panic
// nor pass on anything that was not a whole frame.
func FuzzPort(f *testing.F) {
	f.Add([]byte{0, 0, 0, 14, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 8, 0})
	f.Add([]byte{0, 0, 0, 2, 1, 2})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		s := New(nil)
		defer s.Close()
		a, b := net.Pipe()
		s.Attach("fuzz", a)
		c, d := net.Pipe()
		s.Attach("listener", c)
		got := make(chan []byte, 1)
		go func() {
			buf, _ := io.ReadAll(d)
			got <- buf
		}()
		b.Write(in)
		b.Close()
		waitPorts(t, s, 1)
		s.Close()
		out := <-got
		// What arrived is a sequence of whole frames, each one of the input.
		for len(out) > 0 {
			if len(out) < 4 {
				t.Fatalf("a partial header: %x", out)
			}
			n := binary.BigEndian.Uint32(out[:4])
			if n < 14 || int(n) > len(out)-4 || !bytes.Contains(in, out[4:4+n]) {
				t.Fatalf("a frame that was not sent: %x", out)
			}
			out = out[4+n:]
		}
	})
}

// TestTwoSwitches: two runs' switches never carry each other's frames.
// Each of b's peers gets its own run's broadcast as its first frame,
// though a's was sent before.
func TestTwoSwitches(t *testing.T) {
	a, b := New(nil), New(nil)
	defer a.Close()
	defer b.Close()
	a1, a2 := join(t, a, "a1", 1), join(t, a, "a2", 2)
	b1, b2 := join(t, b, "b1", 1), join(t, b, "b2", 2) // the same addresses
	go a1.send(broadcast, "run a")
	a2.want(a1, "run a")
	go a2.send(a1.mac, "run a, unicast")
	a1.want(a2, "run a, unicast")
	go b1.send(broadcast, "run b")
	b2.want(b1, "run b")
	go b2.send(b1.mac, "run b, unicast")
	b1.want(b2, "run b, unicast")
}
