package hook

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// attacker sends unsigned bodies (a well-formed but wrong signature, so
// that the receiver has to read them) on new connections, again and
// again until stop is closed.
type attacker struct {
	addr     string
	declared int           // Content-Length claimed
	chunk    int           // bytes per write
	every    time.Duration // between writes; 0: as fast as the server reads
	// hold stops one byte short of the declared length, so the request
	// never ends by itself.
	hold bool

	conns    atomic.Int64
	statuses sync.Map // status line -> *atomic.Int64
	mu       sync.Mutex
	longest  time.Duration // longest a connection stayed open
}

var zeros = make([]byte, 1<<20) // shared, so the attackers' own memory is flat

// run attacks on one connection after another until stop is closed.
func (a *attacker) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		a.once(stop)
	}
}

func (a *attacker) once(stop <-chan struct{}) {
	c, err := net.Dial("tcp", a.addr)
	if err != nil {
		time.Sleep(10 * time.Millisecond)
		return
	}
	defer c.Close()
	start := time.Now()
	a.conns.Add(1)
	fmt.Fprintf(c, "POST /hook/github HTTP/1.1\r\nHost: turtles\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: evil-%d\r\n"+
		"X-Hub-Signature-256: sha256=%s\r\nContent-Length: %d\r\n\r\n", a.conns.Load(), strings.Repeat("00", 32), a.declared)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		status, _ := io.ReadAll(io.LimitReader(c, 1<<20)) // until the server closes
		line, _, _ := strings.Cut(string(status), "\r\n")
		n, _ := a.statuses.LoadOrStore(line, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	}()
	for sent := 0; sent < a.declared-1 || (!a.hold && sent < a.declared); {
		n := min(a.chunk, a.declared-sent)
		if a.hold {
			n = min(n, a.declared-1-sent)
		}
		if n <= 0 {
			break
		}
		if _, err := c.Write(zeros[:n]); err != nil {
			break
		}
		sent += n
		if a.every > 0 {
			select {
			case <-time.After(a.every):
			case <-closed:
			case <-stop:
			}
		}
		select {
		case <-closed:
			sent = a.declared // the server gave up on us
		case <-stop:
			sent = a.declared
		default:
		}
	}
	select {
	case <-closed:
	case <-stop:
		c.Close()
		<-closed
	}
	a.mu.Lock()
	a.longest = max(a.longest, time.Since(start))
	a.mu.Unlock()
}

func (a *attacker) status() string {
	var parts []string
	a.statuses.Range(func(k, v any) bool {
		parts = append(parts, fmt.Sprintf("%q x%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	return strings.Join(parts, ", ")
}

// heap is the live heap after a collection.
func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// attackServer serves h as cmd/turtles does, with a short read timeout.
func attackServer(t *testing.T, h http.Handler, readTimeout time.Duration) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadHeaderTimeout = readTimeout
	srv.Config.ReadTimeout = readTimeout
	srv.Config.IdleTimeout = readTimeout
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// signedPush posts a signed push and returns its status and how long the
// answer took.
func signedPush(t *testing.T, url, delivery string, body []byte) (int, time.Duration) {
	req, err := http.NewRequest(http.MethodPost, url+"/hook/github", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", sign(testSecret, body))
	start := time.Now()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Errorf("signed webhook: %v", err)
		return 0, time.Since(start)
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// TestAttackSlowBodies: many connections trickle unsigned bodies that
// claim 25 MB, as in issue 13 (30 of them took the process from 28 MB to
// 1.4 GB, and were all still open after 75 s). Memory stays flat, every
// such connection is closed by the read timeout, and a signed webhook is
// answered meanwhile.
func TestAttackSlowBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("an attack of a few seconds")
	}
	const readTimeout = time.Second
	q := &fakeQueue{}
	h := newTestHook(t, q, 0) // GitHub's 25 MB limit, a 64 MiB budget
	srv := attackServer(t, h, readTimeout)
	base := heap()
	a := &attacker{addr: srv.Listener.Addr().String(), declared: DefaultMaxBody, chunk: 2 << 10, every: 20 * time.Millisecond}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 48 {
		wg.Go(func() { a.run(stop) })
	}
	var peak uint64
	var peakHeld int64
	deadline := time.Now().Add(3 * readTimeout)
	for i := 0; time.Now().Before(deadline); i++ {
		time.Sleep(100 * time.Millisecond)
		peak = max(peak, heap())
		peakHeld = max(peakHeld, h.budget.InFlight())
		if i == 10 {
			code, took := signedPush(t, srv.URL, "legit", fixture(t, "push.payload.json"))
			if code != 200 || took > 2*time.Second {
				t.Errorf("signed webhook during the attack: %d after %s, want 200 within 2s", code, took)
			}
		}
	}
	close(stop)
	wg.Wait()
	growth := int64(peak) - int64(base)
	t.Logf("%d attacking connections; heap %d kB before, peak growth %d kB; at most %d kB of bodies held; longest connection %s; answers: %s",
		a.conns.Load(), base>>10, growth>>10, peakHeld>>10, a.longest, a.status())
	if growth > 16<<20 {
		t.Errorf("heap grew by %d MB during the attack, want under 16", growth>>20)
	}
	if a.longest > readTimeout+time.Second {
		t.Errorf("an attacker's connection stayed open %s, want each closed within the read timeout %s", a.longest, readTimeout)
	}
	if len(q.tasks) != 1 {
		t.Errorf("%d tasks published, want only the signed webhook's", len(q.tasks))
	}
}

// TestAttackBodyFlood: attackers send unsigned bodies as fast as they are
// read and hold the last byte. The bytes held never exceed the budget,
// the rest are turned away with 503, and once the read timeout has cut
// the attackers off a signed webhook goes through.
func TestAttackBodyFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("an attack of a few seconds")
	}
	const (
		readTimeout = 2 * time.Second
		maxBody     = 4 << 20
		budgetSize  = 8 << 20
		attackers   = 16 // 64 MB of bodies
	)
	q := &fakeQueue{}
	budget, err := NewBudget(budgetSize, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewGitHub(Config{Secret: testSecret, Queue: q, Deliveries: &MemoryDeliveries{}, MaxBody: maxBody, Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	srv := attackServer(t, h, readTimeout)
	base := heap()
	a := &attacker{addr: srv.Listener.Addr().String(), declared: maxBody, chunk: 64 << 10, hold: true}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range attackers {
		wg.Go(func() { a.run(stop) })
	}
	var peak uint64
	var peakHeld int64
	for end := time.Now().Add(readTimeout + time.Second); time.Now().Before(end); {
		time.Sleep(100 * time.Millisecond)
		peak = max(peak, heap())
		peakHeld = max(peakHeld, budget.InFlight())
	}
	close(stop)
	wg.Wait()
	growth := int64(peak) - int64(base)
	t.Logf("%d attacking connections; heap %d kB before, peak growth %d kB; at most %d kB of bodies held; answers: %s",
		a.conns.Load(), base>>10, growth>>10, peakHeld>>10, a.status())
	if peakHeld > budgetSize {
		t.Errorf("%d bytes of bodies held, over the budget of %d", peakHeld, budgetSize)
	}
	// Twice the budget: what the collector may leave between cycles.
	if growth > 2*budgetSize+4<<20 {
		t.Errorf("heap grew by %d MB, want under %d", growth>>20, (2*budgetSize+4<<20)>>20)
	}
	if n := budget.InFlight(); n != 0 {
		t.Errorf("%d bytes still charged after the attack", n)
	}
	if code, _ := signedPush(t, srv.URL, "legit", fixture(t, "push.payload.json")); code != 200 {
		t.Errorf("signed webhook after the attack: %d, want 200", code)
	}
}
