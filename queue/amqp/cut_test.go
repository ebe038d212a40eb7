package amqp_test

import (
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turtles-ci/turtles/queue/amqp"
	"github.com/turtles-ci/turtles/queue/queuetest"
)

// cutProxy forwards AMQP connections to the broker. Armed, it lets the
// client's bytes through but swallows the broker's replies, then cuts
// the connection: a publish reaches the broker, its confirm never comes
// back. With cutAfterReply, it passes the broker's next reply on and then
// cuts: what the client sends after that reply is lost, as if the client
// died there. With cutOnCommit, it arms itself when the client sends a
// tx.commit: the broker commits, the client never hears it. Each
// disarms itself, so that the reconnect goes through.
type cutProxy struct {
	ln            net.Listener
	target        string
	armed         atomic.Bool
	cutAfterReply atomic.Bool
	cutOnCommit   atomic.Bool
	cuts          atomic.Int32
	wg            sync.WaitGroup
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.serve(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *cutProxy) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	go func() {
		p.forward(server, client)
		server.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if err != nil {
			return
		}
		if p.armed.Load() {
			// The broker's answer is lost: give the client's publishes
			// time to arrive, then cut.
			time.Sleep(300 * time.Millisecond)
			if p.armed.CompareAndSwap(true, false) {
				p.cuts.Add(1)
			}
			return
		}
		if _, err := client.Write(buf[:n]); err != nil {
			return
		}
		if p.cutAfterReply.CompareAndSwap(true, false) {
			p.cuts.Add(1)
			return
		}
	}
}

// forward copies the client's bytes to the broker, reading the frames
// to find a tx.commit (class 90, method 20) for cutOnCommit.
func (p *cutProxy) forward(server, client net.Conn) {
	var pending []byte
	header := true // the protocol header, "AMQP" and 4 bytes, comes first
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if err != nil {
			return
		}
		if _, err := server.Write(buf[:n]); err != nil {
			return
		}
		pending = append(pending, buf[:n]...)
		if header && len(pending) >= 8 {
			pending, header = pending[8:], false
		}
		for !header && len(pending) >= 7 {
			size := int(binary.BigEndian.Uint32(pending[3:7]))
			if len(pending) < 7+size+1 {
				break
			}
			payload := pending[7 : 7+size]
			if pending[0] == 1 && size >= 4 && binary.BigEndian.Uint16(payload) == 90 && binary.BigEndian.Uint16(payload[2:]) == 20 &&
				p.cutOnCommit.CompareAndSwap(true, false) {
				p.armed.Store(true)
			}
			pending = pending[7+size+1:]
		}
	}
}

// openCut opens a queue that reaches the test broker through a cutProxy,
// with prefix (a fresh one if "").
func openCut(t *testing.T, prefix string) (*amqp.Queue, *cutProxy) {
	t.Helper()
	addr := strings.TrimSuffix(strings.SplitN(broker.URL, "@", 2)[1], "/")
	proxy := startCutProxy(t, addr)
	q := openWith(t, amqp.Config{URL: strings.Replace(broker.URL, addr, proxy.ln.Addr().String(), 1), Prefix: prefix})
	return q, proxy
}

// TestLostConfirm: a publish that reached the broker but whose confirm
// was lost with the connection is tried again after the reconnect, and
// succeeds: the task is not lost. The broker dedupes nothing, so the
// first try's copy may be queued too (each try has its own token); two
// copies of one reservation run the same work twice, and the state
// database keeps the first final event of the attempt.
func TestLostConfirm(t *testing.T) {
	t.Parallel()
	q, proxy := openCut(t, "")
	// Topology first, through an ordinary publish and claim, so that the
	// next publish goes straight to the message, and it is its confirm
	// that is lost, not a declare's reply.
	task := queuetest.Task(1, "public")
	if err := q.Publish(t.Context(), task); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	ack(t, claimKey(t, q, task.Key()))

	proxy.armed.Store(true)
	if err := q.Publish(ctxFor(t, 30*time.Second), task); err != nil {
		t.Fatalf("Publish across a lost confirm = %v, want nil", err)
	}
	if proxy.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d connections, want 1: the test did not test that", proxy.cuts.Load())
	}
	if n := copiesOf(t, q, task.Key()); n < 1 || n > 2 {
		t.Errorf("%d copies queued by a publish tried twice, want 1 or 2", n)
	}
}

// TestNackReplacedWithItsAck: the next attempt that a Nack queues and the
// ack of the failed one are one step. The proxy passes the broker's first
// reply to the Nack on and cuts the connection right after it: had the
// next attempt been published and confirmed before the ack was sent, the
// ack would be lost, the broker would hand the failed attempt out again,
// and the task would be queued twice.
func TestNackReplacedWithItsAck(t *testing.T) {
	t.Parallel()
	q, proxy := openCut(t, "")
	task := queuetest.Task(1, "public")
	if err := q.Publish(t.Context(), task); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	d := claimKey(t, q, task.Key())
	proxy.cutAfterReply.Store(true)
	// The Nack may or may not learn that it went through: either is fine.
	d.Nack(t.Context(), 0, "flaky")
	if proxy.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d connections, want 1: the test did not test that", proxy.cuts.Load())
	}
	d = claimKey(t, q, task.Key())
	if d.Count() != 2 {
		t.Errorf("Count() = %d after one Nack, want 2", d.Count())
	}
	claimBarrier(t, q, "a second copy of a nacked task")
	ack(t, d)
	claimBarrier(t, q, "a second copy of a nacked task, after the ack")
}
