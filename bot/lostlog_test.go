package bot

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/turtles-ci/turtles/store"
)

func TestEndLog(t *testing.T) {
	const prefix = "o/r/0123/unit/1/"
	const key = prefix + store.LogName
	const line = "bot bot2 stopped heart-beating at 16:02:36 UTC"
	put := func(t *testing.T, st store.Store, k, v string) {
		t.Helper()
		if err := st.Put(context.Background(), k, strings.NewReader(v), logType); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, st store.Store)
		want  string
	}{{
		name:  "a log written in place stops mid-line",
		setup: func(t *testing.T, st store.Store) { put(t, st, key, "turtles: bot bot2: test attempt 1\nsleeping") },
		want:  "turtles: bot bot2: test attempt 1\nsleeping\nturtles: " + line + "\n",
	}, {
		name: "a log still in chunks",
		setup: func(t *testing.T, st store.Store) {
			put(t, st, store.ChunkKey(key, 1), "one\n")
			put(t, st, store.ChunkKey(key, 2), "two\n")
			idx, _ := json.Marshal(store.ChunkIndex{Offsets: []int64{0, 4}, Size: 8})
			put(t, st, store.ChunkIndexKey(key), string(idx))
		},
		want: "one\ntwo\nturtles: " + line + "\n",
	}, {
		name:  "no log at all",
		setup: func(t *testing.T, st store.Store) {},
		want:  "turtles: " + line + "\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := store.NewDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			tt.setup(t, st)
			if err := EndLog(t.Context(), st, prefix, line); err != nil {
				t.Fatalf("EndLog: %v", err)
			}
			rc, _, err := st.Get(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			if string(b) != tt.want {
				t.Errorf("log = %q, want %q", b, tt.want)
			}
			infos, err := st.List(t.Context(), key+store.ChunkDir)
			if err != nil || len(infos) != 0 {
				t.Errorf("chunks left: %v (%v)", infos, err)
			}
		})
	}
}
