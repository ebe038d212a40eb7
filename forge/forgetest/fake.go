package forgetest

import (
	"encoding/json"
	"net/http"
	"sync"
)

// What the fake forge APIs (githubtest, gitlabtest) share: a record of
// the requests they answered, and answers injected in place of the next
// requests.

// Request is one request a fake API answered, whatever its answer.
type Request struct {
	Method string
	// Path is the path as sent (escaped), such as
	// /api/v4/projects/group%2Fname/statuses/SHA.
	Path string
	// Header holds the headers the fake keeps (NewRecorder).
	Header http.Header
	// Code is the HTTP status the fake answered with.
	Code int
}

// Recorder keeps the requests a fake answered, in arrival order. It is
// safe for concurrent use.
type Recorder struct {
	headers []string
	mu      sync.Mutex
	reqs    []Request
}

// NewRecorder keeps the named headers of each request, those worth
// asserting on (credentials, User-Agent, content types).
func NewRecorder(headers ...string) *Recorder { return &Recorder{headers: headers} }

// Record records r, answered with code.
func (rec *Recorder) Record(r *http.Request, code int) {
	h := http.Header{}
	for _, k := range rec.headers {
		if v := r.Header.Values(k); len(v) > 0 {
			h[k] = append([]string(nil), v...)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.reqs = append(rec.reqs, Request{Method: r.Method, Path: r.URL.EscapedPath(), Header: h, Code: code})
}

// Requests returns a copy of every request recorded.
func (rec *Recorder) Requests() []Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := make([]Request, len(rec.reqs))
	for i, r := range rec.reqs {
		r.Header = r.Header.Clone()
		out[i] = r
	}
	return out
}

// Fault is an answer injected in place of a request's.
type Fault struct {
	Code int
	// Header is added to the answer, e.g. rate-limit headers.
	Header http.Header
	// Message is the JSON error message; default the status text.
	Message string
	// DocumentationURL is GitHub's documentation_url field.
	DocumentationURL string
}

// Text is f's message, or its status text.
func (f Fault) Text() string {
	if f.Message != "" {
		return f.Message
	}
	return http.StatusText(f.Code)
}

// Faults is a queue of injected answers, one taken per request. The zero
// value is empty and ready; it is safe for concurrent use.
type Faults struct {
	mu sync.Mutex
	q  []Fault
}

// Add queues f for the next n requests, behind those already queued.
func (fs *Faults) Add(n int, f Fault) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for range n {
		fs.q = append(fs.q, f)
	}
}

// Take removes and returns the first queued fault, if any.
func (fs *Faults) Take() (Fault, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.q) == 0 {
		return Fault{}, false
	}
	f := fs.q[0]
	fs.q = fs.q[1:]
	return f, true
}

// WriteJSON writes an answer: header, then code with body as JSON of
// contentType. A client that hung up gets nothing.
func WriteJSON(w http.ResponseWriter, code int, header http.Header, contentType string, body any) {
	for k, v := range header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
