package amqptest

import (
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
)

// Proxy forwards TCP connections to a broker, so that a test can take the
// broker away from its clients and give it back without restarting it (a
// restart costs seconds and drops every other test's connections).
type Proxy struct {
	// URL is the broker's URL with the proxy's address in it.
	URL string

	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	state proxyState
	conns map[net.Conn]bool // both ends of every forwarded connection

	refused atomic.Int64
}

type proxyState int

const (
	proxyUp   proxyState = iota
	proxyDown            // connections cut, new ones closed at once
	proxyHang            // connections held open, nothing passes
)

// StartProxy starts a proxy to the broker at brokerURL on a free port of
// 127.0.0.1. Close stops it.
func StartProxy(brokerURL string) (*Proxy, error) {
	u, err := url.Parse(brokerURL)
	if err != nil {
		return nil, fmt.Errorf("broker URL: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	u.Host = ln.Addr().String()
	p.URL = u.String()
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		state := p.state
		if state != proxyDown {
			p.conns[c] = true
		}
		p.mu.Unlock()
		switch state {
		case proxyDown:
			// As a stopped node's port would: the client learns at once.
			p.refused.Add(1)
			c.Close()
		case proxyHang:
			// Held open until Up or Close; the client hears nothing.
		default:
			p.wg.Add(1)
			go p.forward(c)
		}
	}
}

func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(client)
		return
	}
	p.mu.Lock()
	p.conns[server] = true
	p.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && p.passing() {
				if _, err := dst.Write(buf[:n]); err != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		p.drop(client)
		p.drop(server)
	}
	go pipe(server, client)
	pipe(client, server)
}

// passing reports whether bytes go through; while hanging they are
// swallowed.
func (p *Proxy) passing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == proxyUp
}

func (p *Proxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// cutAll closes every connection; the caller holds p.mu.
func (p *Proxy) cutAll() {
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Down cuts every connection and closes new ones as soon as they are
// accepted, as a stopped node does: clients see the outage at once.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = proxyDown
	p.cutAll()
}

// Hang keeps every connection open but lets nothing through either way,
// and holds new ones open without an answer, as a network that drops
// packets does: clients see the outage only through their own timeouts.
func (p *Proxy) Hang() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = proxyHang
}

// Up lets connections through again. Connections held while hanging are
// cut (bytes were lost in them); clients reconnect.
func (p *Proxy) Up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == proxyHang {
		p.cutAll()
	}
	p.state = proxyUp
}

// Refused is how many connections the proxy closed at once while down:
// the clients' reconnect tries.
func (p *Proxy) Refused() int { return int(p.refused.Load()) }

// Close stops the proxy and cuts every connection.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	p.cutAll()
	p.mu.Unlock()
	p.wg.Wait()
	return err
}
