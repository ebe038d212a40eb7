package web

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/turtles-ci/turtles/queue"
	"github.com/turtles-ci/turtles/state"
)

// The "Now" page (/ and /now, JSON at /api/v1/now): per pool, the tasks
// queued with how long each has waited, those running with their bot,
// those waiting to retry; the dead letters; the bots; the tasks that
// finished last.

// nowLimit bounds each list of the page; more is said, not shown.
const nowLimit = 1000

type nowView struct {
	chrome      `json:"-"`
	Pools       []poolView         `json:"pools"`
	DeadLetters []queue.DeadLetter `json:"dead_letters"`
	Bots        []botView          `json:"bots"`
	Finished    []state.Task       `json:"finished"`
	// HasQueue and HasBots say whether this server can list dead letters
	// and bots at all; the errors say it could not just now.
	HasQueue bool   `json:"-"`
	HasBots  bool   `json:"-"`
	DeadErr  string `json:"dead_letters_error,omitempty"`
	BotsErr  string `json:"bots_error,omitempty"`
	// Counts for the summary line.
	Queued, Running, Retrying, Alive int `json:"-"`
	// Truncated says a list reached nowLimit.
	Truncated bool `json:"truncated,omitempty"`
}

// poolView is one pool's tasks: queued longest-waiting first, running
// longest-running first, waiting to retry oldest first.
type poolView struct {
	Name     string       `json:"name"`
	Queued   []state.Task `json:"queued"`
	Running  []state.Task `json:"running"`
	Retrying []state.Task `json:"retrying"`
	Bots     int          `json:"bots"`
}

// botView is a bot as its heartbeat left it, and whether it is alive.
type botView struct {
	state.Bot
	Alive bool `json:"alive"`
	// Current are the running tasks it holds that the viewer may see.
	Current []state.Task `json:"-"`
}

func (s *Server) nowPage(w http.ResponseWriter, r *http.Request) {
	who := s.viewer(r)
	if _, err := query(r); err != nil {
		s.pageFailed(w, r, who, err)
		return
	}
	v, err := s.now(r.Context(), who)
	if err != nil {
		s.pageFailed(w, r, who, err)
		return
	}
	v.chrome = s.chrome(who, "Now", "now", true)
	s.render(w, r, http.StatusOK, "now.html", v)
}

func (s *Server) nowAPI(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		s.apiFailed(w, r, err)
		return
	}
	v, err := s.now(r.Context(), s.viewer(r))
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) now(ctx context.Context, who *viewer) (nowView, error) {
	now := s.cfg.Now()
	v := nowView{HasQueue: s.cfg.Queue != nil, HasBots: s.cfg.Bots != nil, DeadLetters: []queue.DeadLetter{}, Bots: []botView{}}
	pools := map[string]*poolView{}
	pool := func(name string) *poolView {
		if pools[name] == nil {
			pools[name] = &poolView{Name: name, Queued: []state.Task{}, Running: []state.Task{}, Retrying: []state.Task{}}
		}
		return pools[name]
	}
	running := map[string]state.Task{}
	for _, st := range []state.TaskState{state.Queued, state.Running, state.Retrying} {
		ts, err := s.cfg.History.List(ctx, state.Filter{State: st, Limit: nowLimit})
		if err != nil {
			return v, err
		}
		v.Truncated = v.Truncated || len(ts) == nowLimit
		// Oldest first: the longest wait, the longest run.
		slices.Reverse(ts)
		for _, t := range who.tasks(ts) {
			p := pool(t.Pool)
			switch st {
			case state.Queued:
				p.Queued = append(p.Queued, t)
				v.Queued++
			case state.Running:
				p.Running = append(p.Running, t)
				running[t.ID] = t
				v.Running++
			case state.Retrying:
				p.Retrying = append(p.Retrying, t)
				v.Retrying++
			}
		}
	}
	if s.cfg.Queue != nil {
		dl, err := s.cfg.Queue.DeadLetters(ctx)
		if err != nil {
			s.cfg.Log.Warn("list dead letters", "err", err)
			v.DeadErr = "The queue did not answer; the server's log has the cause."
		}
		for _, d := range dl {
			if who.canRead(d.Task.Repo.Name) {
				v.DeadLetters = append(v.DeadLetters, d)
			}
		}
	}
	if s.cfg.Bots != nil {
		bots, err := s.cfg.Bots.Bots(ctx)
		if err != nil {
			s.cfg.Log.Warn("list bots", "err", err)
			v.BotsErr = "The state database did not list the bots; the server's log has the cause."
		}
		for _, b := range bots {
			bv := botView{Bot: b, Alive: now.Sub(b.Seen) < s.cfg.BotTimeout}
			// Only the tasks the viewer may see are named.
			var ids []string
			for _, id := range b.Tasks {
				if t, ok := running[id]; ok {
					bv.Current = append(bv.Current, t)
					ids = append(ids, id)
				}
			}
			if s.cfg.Auth != nil {
				bv.Tasks = ids
			}
			if bv.Alive {
				v.Alive++
				pool(b.Pool).Bots++
			}
			v.Bots = append(v.Bots, bv)
		}
		slices.SortFunc(v.Bots, func(a, b botView) int { return strings.Compare(a.Pool+"\x00"+a.Name, b.Pool+"\x00"+b.Name) })
	}
	fin, err := s.cfg.History.List(ctx, state.Filter{State: state.Finished, Limit: 20})
	if err != nil {
		return v, err
	}
	v.Finished = who.tasks(fin)
	for _, name := range sortedKeys(pools) {
		v.Pools = append(v.Pools, *pools[name])
	}
	if v.Pools == nil {
		v.Pools = []poolView{}
	}
	return v, nil
}

// botsAPI answers GET /api/v1/bots: the bots, alive or not.
func (s *Server) botsAPI(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		s.apiFailed(w, r, err)
		return
	}
	if s.cfg.Bots == nil {
		writeError(w, http.StatusNotFound, "this server does not know the bots")
		return
	}
	v, err := s.now(r.Context(), s.viewer(r))
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if v.BotsErr != "" {
		writeError(w, http.StatusServiceUnavailable, v.BotsErr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"bots": v.Bots})
}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		s.apiFailed(w, r, err)
		return
	}
	if s.cfg.Queue == nil {
		writeError(w, http.StatusNotFound, "this process has no queue")
		return
	}
	dl, err := s.cfg.Queue.DeadLetters(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	who := s.viewer(r)
	out := []queue.DeadLetter{}
	for _, d := range dl {
		if who.canRead(d.Task.Repo.Name) {
			out = append(out, d)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": out})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
