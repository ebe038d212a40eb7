// Package vnet is the private Ethernet network of the machines of one run:
// a learning switch in this process that QEMU's network cards join over
// unix sockets (QEMU's "stream" netdev: each frame preceded by its length
// as four big-endian bytes). It needs no root, bridge or TAP device, and
// runs are isolated by construction: a switch carries frames only between
// the connections it was given, and every run has its own.
//
// Each port has a bounded queue of frames to send: a peer that does not
// read (or one that floods) loses frames, never stalls the others or
// grows memory. A frame is sent to the port that last sent from its
// destination address, or to every other port when that is unknown,
// broadcast or multicast.
//
// The cluster package and cmd/turtles import it.
package vnet

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
)

// MaxFrame is the largest frame a port accepts; a longer length prefix
// ends the port (a peer that speaks something else). It is above the
// 65535-byte frames virtio-net may send with offloads.
const MaxFrame = 65536 + 14

// QueueLen is how many frames wait for a slow port before new ones are
// dropped.
const QueueLen = 512

type mac [6]byte

// Switch is a learning Ethernet switch. Its zero value is not usable: use
// New.
type Switch struct {
	log *slog.Logger

	mu     sync.Mutex
	ports  map[*port]bool
	table  map[mac]*port
	closed bool
	wg     sync.WaitGroup
	// empty is closed when the last port leaves after one has joined.
	empty  chan struct{}
	joined bool

	dropped atomic.Int64
}

// New returns a switch with no ports.
func New(log *slog.Logger) *Switch {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Switch{log: log, ports: map[*port]bool{}, table: map[mac]*port{}, empty: make(chan struct{})}
}

type port struct {
	name string
	conn io.ReadWriteCloser
	out  chan []byte
	once sync.Once
}

func (p *port) close() {
	p.once.Do(func() {
		p.conn.Close()
		close(p.out)
	})
}

// ErrClosed is returned by Attach on a closed switch.
var ErrClosed = errors.New("vnet: switch closed")

// Attach adds a port that carries frames over conn until conn ends or
// the switch closes; name is for the log. The switch owns conn from now
// on and closes it.
func (s *Switch) Attach(name string, conn io.ReadWriteCloser) error {
	p := &port{name: name, conn: conn, out: make(chan []byte, QueueLen)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return ErrClosed
	}
	s.ports[p] = true
	s.joined = true
	s.wg.Add(2)
	s.mu.Unlock()
	go s.write(p)
	go s.read(p)
	s.log.Debug("vnet: port joined", "port", name)
	return nil
}

// Empty is closed when the last port has left, once one has joined: a
// switch of its own process (turtles cluster) then has nothing left to
// do.
func (s *Switch) Empty() <-chan struct{} { return s.empty }

// Dropped is how many frames were dropped because a port's queue was
// full.
func (s *Switch) Dropped() int64 { return s.dropped.Load() }

// Ports is how many ports are attached.
func (s *Switch) Ports() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ports)
}

// Close ends every port and waits for their goroutines.
func (s *Switch) Close() error {
	s.mu.Lock()
	s.closed = true
	ports := make([]*port, 0, len(s.ports))
	for p := range s.ports {
		ports = append(ports, p)
	}
	s.mu.Unlock()
	for _, p := range ports {
		s.remove(p)
	}
	s.wg.Wait()
	return nil
}

func (s *Switch) remove(p *port) {
	s.mu.Lock()
	if s.ports[p] {
		delete(s.ports, p)
		for a, q := range s.table {
			if q == p {
				delete(s.table, a)
			}
		}
		if len(s.ports) == 0 && s.joined {
			select {
			case <-s.empty:
			default:
				close(s.empty)
			}
		}
	}
	s.mu.Unlock()
	p.close()
}

func (s *Switch) read(p *port) {
	defer s.wg.Done()
	defer s.remove(p)
	r := bufio.NewReaderSize(p.conn, 64<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("vnet: port left", "port", p.name, "err", err)
			}
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > MaxFrame {
			s.log.Warn("vnet: frame too long: dropping the port", "port", p.name, "length", n)
			return
		}
		frame := make([]byte, n)
		if _, err := io.ReadFull(r, frame); err != nil {
			return
		}
		if n < 14 {
			continue // not Ethernet
		}
		s.forward(p, frame)
	}
}

// forward learns the frame's source and queues it for its destination.
func (s *Switch) forward(from *port, frame []byte) {
	var dst, src mac
	copy(dst[:], frame[0:6])
	copy(src[:], frame[6:12])
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ports[from] {
		return
	}
	if src[0]&1 == 0 {
		s.table[src] = from
	}
	if dst[0]&1 == 0 {
		if to, ok := s.table[dst]; ok {
			if to != from {
				s.send(to, frame)
			}
			return
		}
	}
	for p := range s.ports {
		if p != from {
			s.send(p, frame)
		}
	}
}

// send queues frame for p, or drops it when p's queue is full; s.mu is
// held, so p.out is open.
func (s *Switch) send(p *port, frame []byte) {
	select {
	case p.out <- frame:
	default:
		s.dropped.Add(1)
	}
}

func (s *Switch) write(p *port) {
	defer s.wg.Done()
	w := bufio.NewWriterSize(p.conn, 64<<10)
	var hdr [4]byte
	for frame := range p.out {
		binary.BigEndian.PutUint32(hdr[:], uint32(len(frame)))
		w.Write(hdr[:])
		w.Write(frame)
		if len(p.out) == 0 {
			if err := w.Flush(); err != nil {
				s.remove(p)
				for range p.out {
				}
				return
			}
		}
	}
}

// String describes the switch for logs.
func (s *Switch) String() string {
	return fmt.Sprintf("vnet switch with %d ports", s.Ports())
}
