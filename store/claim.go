package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/turtles-ci/turtles"
)

// ClaimName is the marker an attempt puts first under its prefix, with
// PutNew: whoever creates it owns the prefix, and nobody writes under a
// prefix they do not own.
const ClaimName = "claim.json"

// MaxAttemptSkip bounds how many taken attempt numbers ClaimAttempt steps
// over for one task: enough for any honest history of a commit's context,
// and a bound on the requests a flood of replays can cost.
const MaxAttemptSkip = 1000

// Claim is the content of an attempt's marker, for people reading the
// store.
type Claim struct {
	Bot     string    `json:"bot"`
	Attempt int       `json:"attempt"`
	Claimed time.Time `json:"claimed"`
}

// ErrAttemptsTaken is returned (wrapped) by ClaimAttempt when every number
// it may try is taken.
var ErrAttemptsTaken = errors.New("every attempt number is taken")

// ClaimAttempt returns t with the first attempt number, from t.Attempt on,
// whose prefix it could claim in s, so that an attempt never writes over
// an earlier one's log, result or artifacts: the queue counts attempts
// per publication, and a task published again after it finished (a
// replayed webhook, a redelivery) starts at 1 again.
//
// A prefix is taken when its marker exists (PutNew refuses it) or, for
// attempts stored before markers existed, when anything else lies under
// it; the marker is then left behind, harmless. Errors other than
// ErrAttemptsTaken are the store's and worth a retry.
func ClaimAttempt(ctx context.Context, s Store, t turtles.Task, bot string, now time.Time) (turtles.Task, error) {
	first := t.Attempt
	for ; t.Attempt < first+MaxAttemptSkip; t.Attempt++ {
		prefix := AttemptPrefix(t)
		b, err := json.Marshal(Claim{Bot: bot, Attempt: t.Attempt, Claimed: now.UTC()})
		if err != nil {
			return t, err
		}
		err = s.PutNew(ctx, prefix+ClaimName, bytes.NewReader(b), "application/json")
		if errors.Is(err, ErrExist) {
			continue
		}
		if err != nil {
			return t, fmt.Errorf("claim attempt %d of %s: %w", t.Attempt, t.Key(), err)
		}
		infos, err := s.List(ctx, prefix)
		if err != nil {
			return t, fmt.Errorf("claim attempt %d of %s: %w", t.Attempt, t.Key(), err)
		}
		if len(infos) > 1 {
			continue
		}
		return t, nil
	}
	return t, fmt.Errorf("claim an attempt of %s: attempts %d to %d: %w", t.Key(), first, t.Attempt-1, ErrAttemptsTaken)
}
