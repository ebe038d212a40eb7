package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/turtles-ci/turtles"
	"github.com/turtles-ci/turtles/store"
)

// EndLost ends the stored files of res's attempt, whose bot died before
// it could: its log ends with a turtles line saying why (res's reason) and
// res is stored as its result, so that the log page, which follows the log
// until a result appears, shows it ended. The recorder calls it once per
// lost attempt.
func EndLost(ctx context.Context, st store.Store, res turtles.Result) error {
	prefix := store.AttemptPrefix(res.Task)
	if err := EndLog(ctx, st, prefix, res.Outcome.Reason); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := st.Put(ctx, prefix+store.ResultName, bytes.NewReader(b), "application/json"); err != nil {
		return fmt.Errorf("store result of %s: %w", prefix, err)
	}
	return nil
}

// EndLog appends a turtles line to the log of the attempt under prefix,
// whose bot died before it could close it, so that the raw log ends with
// why. A log still in chunks (see liveLog) is stored whole with the line,
// and its chunks removed, as the bot's Close would have; readers then see
// it complete.
func EndLog(ctx context.Context, st store.Store, prefix, line string) error {
	key := prefix + store.LogName
	var buf bytes.Buffer
	rc, _, err := st.Get(ctx, key)
	var chunks *store.ChunkIndex
	switch {
	case err == nil:
		_, err = io.Copy(&buf, io.LimitReader(rc, maxLogSize))
		rc.Close()
		if err != nil {
			return fmt.Errorf("read log %s: %w", key, err)
		}
	case errors.Is(err, store.ErrNotExist):
		if chunks, err = appendChunks(ctx, st, key, &buf); err != nil {
			return err
		}
	default:
		return fmt.Errorf("read log %s: %w", key, err)
	}
	if b := buf.Bytes(); len(b) > 0 && b[len(b)-1] != '\n' {
		buf.WriteByte('\n')
	}
	logf(&buf, "%s", line)
	if err := st.Put(ctx, key, &buf, logType); err != nil {
		return fmt.Errorf("store log %s: %w", key, err)
	}
	if chunks != nil {
		if err := store.DeleteChunks(ctx, st, key, *chunks); err != nil {
			return fmt.Errorf("remove log chunks of %s: %w", key, err)
		}
	}
	return nil
}

// appendChunks copies the chunks of the live log at key into w and returns
// its index; nil when there is none.
func appendChunks(ctx context.Context, st store.Store, key string, w io.Writer) (*store.ChunkIndex, error) {
	idx, err := store.GetChunkIndex(ctx, st, key)
	if errors.Is(err, store.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if _, err := store.CopyChunks(ctx, st, key, idx, w); err != nil {
		return nil, err
	}
	return &idx, nil
}
