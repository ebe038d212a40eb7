package store

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
)

// AttemptOf returns the attempt prefix (OWNER/REPO/SHA/CONTEXT/ATTEMPT/,
// as AttemptPrefix makes it) of a key under one, or "" for a key that is
// not an attempt's file. The repository name may have more than two
// segments (GitLab groups): the first commit ID after OWNER/REPO marks
// where the attempt's own segments start.
func AttemptOf(key string) string {
	seg := strings.Split(key, "/")
	for i := 2; i+3 < len(seg); i++ {
		if turtles.IsSHA(seg[i]) {
			if n, err := strconv.Atoi(seg[i+2]); err != nil || n < 1 || strconv.Itoa(n) != seg[i+2] {
				return ""
			}
			return strings.Join(seg[:i+3], "/") + "/"
		}
	}
	return ""
}

// PruneStats counts what Prune deleted (or, dry, would delete).
type PruneStats struct {
	Attempts, Files int
}

// Prune deletes every file of each attempt whose newest file is older
// than cutoff; an attempt still being written is newer, so it stays. Keys
// that belong to no attempt (AttemptOf) are left alone. With dryRun it
// only counts. On error the stats say what was deleted before it.
func Prune(ctx context.Context, st Store, cutoff time.Time, dryRun bool) (PruneStats, error) {
	var stats PruneStats
	all, err := st.List(ctx, "")
	if err != nil {
		return stats, fmt.Errorf("prune: %w", err)
	}
	newest := map[string]time.Time{}
	keys := map[string][]string{}
	for _, info := range all {
		p := AttemptOf(info.Key)
		if p == "" {
			continue
		}
		if info.Modified.After(newest[p]) {
			newest[p] = info.Modified
		}
		keys[p] = append(keys[p], info.Key)
	}
	var old []string
	for p, t := range newest {
		if t.Before(cutoff) {
			old = append(old, p)
		}
	}
	sort.Strings(old)
	for _, p := range old {
		for _, k := range keys[p] {
			if !dryRun {
				if err := st.Delete(ctx, k); err != nil {
					return stats, fmt.Errorf("prune %s: %w", k, err)
				}
			}
			stats.Files++
		}
		stats.Attempts++
	}
	return stats, nil
}

// PruneHeld deletes the held VMs (HeldName) of attempts that were held
// before cutoff: they are large, and worth keeping for days, not as long
// as the logs (Prune deletes them with their attempt too). With dryRun it
// only counts. It returns how many it deleted (or would).
func PruneHeld(ctx context.Context, st Store, cutoff time.Time, dryRun bool) (int, error) {
	all, err := st.List(ctx, "")
	if err != nil {
		return 0, fmt.Errorf("prune held VMs: %w", err)
	}
	n := 0
	for _, info := range all {
		p := AttemptOf(info.Key)
		if p == "" || info.Key != p+HeldName || !info.Modified.Before(cutoff) {
			continue
		}
		if !dryRun {
			if err := st.Delete(ctx, info.Key); err != nil {
				return n, fmt.Errorf("prune %s: %w", info.Key, err)
			}
		}
		n++
	}
	return n, nil
}
